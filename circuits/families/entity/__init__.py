"""The entity families: two-hop composition and attribute comparison (Wang et al. 2024).

- `family`: what both share (`EntityTask`, `EntityFamily`: presets' model, phases, report)
- `two_hop`, `comparison`: each family's config, presets and `Family` object
- `two_hop_data`, `comparison_data`, `vocab`, `kb_file`: the synthetic knowledge bases, their
  token layout, and facts read from a JSONL/CSV file
- `measures`: counterfactual pairs, the mediation score (`circuit_score`), logit-lens targets
  and probe data; `analysis`: one checkpoint's typed result and the run's analysis
- `figures`: the family's plotly figures
The read-outs themselves (logit lens, causal tracing, linear probes) live in `probes/`.
"""
