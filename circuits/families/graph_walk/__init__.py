"""The graph-walk family: next-node prediction on random walks over a graph, whose
irreducible loss is known exactly (docs/graph_walk.md).

- `family`: the config (`GraphWalkTask`), presets, summary facts and the `Family` object
- `walks`: graphs, the walk sampler (fresh or a fixed corpus), the entropy rate H
- `limits`: the best count-based (add-½) learners on the tokens a run saw
- `analysis`: per-node learned transitions, attribution and attention per checkpoint
- `figures`: the family's plotly figures
"""
