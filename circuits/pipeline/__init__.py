"""The analysis pipeline: `analyze` (the entry point, `analyze_run`, and the generic result
containers), `checkpoint_map` (the streamed map over checkpoints, damaged ones skipped),
`figure_steps` (which checkpoints get figure data) and `files` (table.csv, summary.json,
report.html)."""
