"""`interp train --seeds` (ensemble members trained together in one process, `interp.stacked`)
and `interp train --resume` of their folder: the command-line side, and the summary lines
`interp train` prints for each run it trained. Importing this module does not import torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from interp.cli_tracking import LogKind, run_tracker

SeedsOption = Annotated[
    Optional[str],
    typer.Option(
        "--seeds",
        help="Train one member per seed together in one process (stacked weights; model.seed "
        "and train.seed set to each): --out DIR gets DIR/seed=S run folders, e.g. --seeds "
        "0,1,2,3. --resume on DIR continues them all.",
    ),
]


def parse_seeds(text: str, error: type[Exception]) -> list[int]:
    """Parse "0,1,2,3" into [0, 1, 2, 3]; anything else is `error` naming --seeds."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise error(f"--seeds: expected comma-separated integers, e.g. 0,1,2,3, got {text!r}")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise error(f"--seeds: expected distinct non-negative seeds, got {text!r}")
    return seeds


def is_stacked(out: Path) -> bool:
    """Whether `out` holds members trained together (so `--resume` continues them all)."""
    from interp import runs

    return (out / runs.STACKED_FILE).is_file()


def train_members(
    config,
    out: Path,
    seeds: list[int] | None,
    *,
    overwrite: bool,
    quiet: bool,
    log: LogKind | None,
    log_dir: Path | None,
) -> int:
    """Train (seeds given) or resume (None) the members in `out`; print each member's summary
    and each failure. Exit code 1 if a member failed (its folder keeps its last good
    checkpoint), else 0."""
    from interp import stacked

    def tracker_for(run_dir: Path):
        return run_tracker(log, run_dir, None if log_dir is None else log_dir / run_dir.name)

    options: dict[str, Any] = dict(progress=not quiet, tracker_for=tracker_for if log else None)
    if seeds is None:
        result = stacked.resume_members(out, **options)
    else:
        result = stacked.train_members(config, out, seeds, overwrite=overwrite, **options)
    for name in sorted(result.results, key=lambda n: str(n)):
        report(result.results[name])
    for name, why in result.failures.items():
        typer.echo(f"error: {out / name}: {why}", err=True)
    return 1 if result.failures else 0


def report(result) -> None:
    """The lines `interp train` prints for a finished run (`interp.schedule.TrainResult`)."""
    from interp.metrics import format_accuracy
    from interp.runs import read_best

    row = result.last_row
    shown = [
        f"{k} {format_accuracy(row[k], result.split_sizes.get(k))}"
        for k in sorted(row)
        if k.endswith("_acc") and isinstance(row[k], float)
    ]
    if "circuit_score" in row:
        shown.append(f"circuit_score {row['circuit_score']:.3f}")
    stopped = {
        "val_acc": " (stopped early: validation accuracy held)",
        "collapse": " (stopped: collapse)",
    }.get(result.stop_reason or "", "")
    typer.echo(
        f"trained {result.final_step} steps into {result.run_dir} ({', '.join(shown)}){stopped}"
    )
    for event in result.collapses:
        typer.echo(event.describe())
    best = read_best(Path(result.run_dir))
    if best is not None:
        typer.echo(
            f"best checkpoint: step {best['step']} ({best['criterion']} {best['value']:.4g}; never "
            "a test metric)"
        )
