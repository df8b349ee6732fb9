"""Mechanistic analyses of trained runs: `families/` (one package per task family),
`analyses/` (what any family can use), `pipeline/` (`interp analyze`: the map over
checkpoints and the files it writes) and `viz/` (figures and the report)."""
