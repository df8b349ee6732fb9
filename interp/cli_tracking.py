"""`--log` and `--log-dir`: the live-tracking options that `interp train`, `interp analyze` and
`interp sweep run` share, and what they open (`interp.tracking`; part of the CLI). Without
`--log` nothing is imported and nothing changes."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer


class LogKind(str, Enum):
    """The trackers (`interp.tracking.LOG_KINDS`); a choice, so a typo is a usage error."""

    tensorboard = "tensorboard"
    wandb = "wandb"
    mlflow = "mlflow"


LogOption = Annotated[
    Optional[LogKind],
    typer.Option(
        "--log",
        help="Live tracking: tensorboard (event files, config as HParams; pip install "
        "'interp[tensorboard]'), wandb (offline without credentials; pip install "
        "'interp[wandb]') or mlflow (MLFLOW_TRACKING_URI, else a SQLite store in the log dir; "
        "pip install 'interp[mlflow]').",
    ),
]
LogDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--log-dir",
        help="Where --log writes (default: RUN_DIR/tensorboard or RUN_DIR/mlflow; wandb makes "
        "its wandb/ folder in RUN_DIR or here). For a sweep, DIR/RUN_NAME per run (mlflow: one "
        "store in DIR, default SWEEP_DIR/mlflow).",
    ),
]


def run_tracker(log: LogKind | None, run_dir: Path, log_dir: Path | None):
    """The trainer's tracker for `--log` (None without it); a missing extra is one line, exit
    code 2, before anything is written."""
    if log is None:
        return None
    from interp import tracking

    return tracking.for_run(log.value, run_dir, log_dir=log_dir)


def analysis_tracker(log: LogKind | None, run_dir: Path, log_dir: Path | None):
    """`interp analyze --log`'s tracker (None without it), made before the analysis starts."""
    if log is None:
        return None
    from interp import tracking

    return tracking.for_analysis(log.value, run_dir, log_dir=log_dir)


def log_analysis(tracker, table: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> None:
    """Send the analysis table's columns that metrics.jsonl lacks, at their steps (nothing
    without a tracker)."""
    if tracker is None:
        return
    from interp.tracking import analysis_only

    try:
        for row in analysis_only(table, metrics):
            tracker.log_row(row)
    finally:
        tracker.close()


def sweep_log(log: LogKind | None, log_dir: Path | None) -> dict[str, Any] | None:
    """The run option that `interp sweep run --log` hands every run (`interp.sweep.worker`)."""
    if log is None:
        return None
    from interp import tracking

    tracking.require(log.value)  # here, before any run starts
    return {"kind": log.value, "dir": None if log_dir is None else str(log_dir)}
