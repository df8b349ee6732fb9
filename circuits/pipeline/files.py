"""Writing an analysis: `analysis/table.csv`, `analysis/summary.json` and the HTML report.

`write_analysis(result)` is the edge where the typed `circuits.pipeline.analyze.RunAnalysis`
becomes files; nothing here computes an analysis or runs a model (the report reads only the
`RunAnalysis`). `circuits.pipeline.analyze` re-exports these names.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.runs import ANALYSIS_DIR, atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from circuits.pipeline.analyze import RunAnalysis

TABLE_FILE = "table.csv"
SUMMARY_FILE = "summary.json"
#: The self-contained HTML report (`circuits.viz.report`): every figure, offline.
FIGURES_FILE = "report.html"
#: With --circuits: every edge's share of the gap and circuit membership at every checkpoint.
CIRCUIT_EDGES_FILE = "circuit_edges.csv"
BASE_COLUMNS = ["step", "train_acc", "test_acc", "train_loss", "test_loss", "circuit_score"]


def _format(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return value


def write_table(rows: list[dict[str, Any]], path: Path, first: list[str] = BASE_COLUMNS) -> None:
    columns = first + sorted({k for row in rows for k in row} - set(first))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(v) for k, v in row.items()})
    atomic_write_bytes(path, buffer.getvalue().encode())


def _intervals(result: RunAnalysis, row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{column: {n, low, high}} for the accuracies of `row` measured on small splits."""
    out = {}
    for column, value in row.items():
        if column.endswith("_acc") and isinstance(value, float) and math.isfinite(value):
            interval = result.interval(column, value)
            if interval is not None:
                out[column] = {
                    "n": result.split_sizes[column],
                    "low": interval[0],
                    "high": interval[1],
                }
    return out


def summary(result: RunAnalysis, out_dir: Path) -> dict[str, Any]:
    from circuits.analyses.llc import llc_summary

    last = result.checkpoints[-1].row
    llc = llc_summary(result.rows)
    return {
        "run": str(result.run_dir),
        "parts": list(result.parts),
        "n_checkpoints": len(result.checkpoints),
        "steps": [result.steps[0], result.steps[-1]],
        "phases": result.phases.to_dict(),
        "leads": result.leads(),
        "kind": result.kind,
        **result.family.summary_facts(result),
        "final": {k: last[k] for k in BASE_COLUMNS if k in last},
        "final_splits": {k: v for k, v in last.items() if k.endswith("_acc")},
        "final_intervals": _intervals(result, last),
        "split_sizes": result.split_sizes,
        "collapses": [e.to_dict() for e in result.collapses],
        "best": result.best,
        "skipped": [{"step": _step_of(f), "file": f, "reason": r} for f, r in result.skipped],
        "table": str(out_dir / TABLE_FILE),
        "figures": str(out_dir / FIGURES_FILE),
        **(
            {"circuits": {**result.circuits.summary(), "edges": str(out_dir / CIRCUIT_EDGES_FILE)}}
            if result.circuits is not None
            else {}
        ),
        **({"llc": llc} if llc is not None else {}),
    }


def _step_of(file: str) -> int | None:
    stem = Path(file).stem
    return (
        int(stem.removeprefix("step_")) if stem.startswith("step_") and stem[5:].isdigit() else None
    )


def write_analysis(
    result: RunAnalysis, out_dir: Path | None = None, *, figures: bool = True
) -> dict[str, Any]:
    """Write the table, the summary and the report (built from `result` alone); returns the
    summary."""
    out_dir = Path(out_dir) if out_dir is not None else result.run_dir / ANALYSIS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(result.rows, out_dir / TABLE_FILE)
    if result.circuits is not None:
        edges = result.circuits.edge_rows()
        write_table(edges, out_dir / CIRCUIT_EDGES_FILE, list(edges[0]) if edges else [])
    info = summary(result, out_dir)
    if figures:
        from circuits.viz.report import write_report

        write_report(result, out_dir / FIGURES_FILE)
    else:
        info["figures"] = None
    atomic_write_json(out_dir / SUMMARY_FILE, info)
    return info


def dumps(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, sort_keys=True)
