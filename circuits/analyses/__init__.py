"""Analyses that apply to any task family: pure functions of (model, data) returning frozen
results.

- `activations`: answer-position activations gathered in one pass; `attention`, `attribution`:
  attention patterns and direct logit attribution; `circuit_graph`: components and their
  attribution edges at one checkpoint
- `edges`, `discovery`, `circuit_timeline`: the edge graph with an edge-switchable forward,
  edge scores checked against exact patching, and `--circuits` over a run (docs/circuits.md)
- `llc`: the local learning coefficient (`--llc`), its chains' training loss in `llc_loss`;
  `phases`: milestones and phase spans
"""
