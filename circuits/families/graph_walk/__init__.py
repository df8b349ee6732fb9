"""The graph-walk family: next-node prediction on random walks over a graph, whose
irreducible loss is known exactly (docs/graph_walk.md).

- `task`: the config (`GraphWalkTask`), its graph and walks
- `family`: presets, summary facts and the `Family` object
- `distill`: training batches mixed from the corpus and walks a teacher generates
- `walks`: graphs, the walk sampler (fresh or a fixed corpus), the entropy rate H
- `limits`: the best count-based (add-½) learners on the tokens a run saw
- `analysis`: per-node learned transitions, attribution and attention per checkpoint
- `figures`: the family's plotly figures
"""
