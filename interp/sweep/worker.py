"""One run of a sweep, as a worker executes it (the local pool's processes and Ray tasks alike).

`execute` never raises: a run that fails (a bad value found late, a NaN loss, an exception
from deep inside) comes back as ``{"status": "failed", "error": ...}`` and the sweep goes on.
A run folder that already holds a complete checkpoint is *resumed* exactly
(`interp.training.resume`; a finished run returns at once); an empty or never-checkpointed
one starts fresh. A job's "log" option ({"kind", "dir"}, from `interp sweep run --log`) gives
the run a tracker (`interp.tracking`) with its axis values among its hyperparameters; it is
a run option, not part of the config (whose hash names the run).
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any


def warm_up(threads: int) -> None:
    """What a persistent worker does once: its torch threads, and the slow imports
    (TransformerLens) that every run would otherwise pay."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    import transformer_lens  # noqa: F401

    from interp import training  # noqa: F401


def _has_checkpoint(run_dir: Path) -> bool:
    from interp import runs

    try:
        return bool(runs.read_manifest(run_dir))
    except runs.RunError:
        return False


def _reset_global_rngs(seed: int) -> None:
    """A run starts from the same global RNG state whatever ran before it in this worker
    (its trainer state saves that state, so the run folder does not depend on the worker's
    history or the backend; a resumed run restores it from there)."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _clear_aborted_start(run_dir: Path) -> None:
    """A start killed before its config was written leaves only the writer lock: remove it
    (anything else in the folder is left for `training.train` to refuse, naming it)."""
    from interp import runs

    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} == {runs.LOCK_FILE}:
        (run_dir / runs.LOCK_FILE).unlink()


def _tracker(job: dict[str, Any], run_dir: Path):
    """The run's tracker for the job's "log" option (None without one): logs in
    DIR/NAME with a log dir, else in the run folder; the axes as hyperparameters. MLflow's
    runs share one store (DIR, else SWEEP_DIR/mlflow), so that its UI compares them."""
    log = job.get("log")
    if not log:
        return None
    from interp import tracking

    sweep_dir = run_dir.parent.parent  # SWEEP_DIR/runs/NAME
    if log["kind"] == "mlflow":
        log_dir = Path(log["dir"]) if log.get("dir") else sweep_dir / "mlflow"
    else:
        log_dir = Path(log["dir"]) / run_dir.name if log.get("dir") else None
    group = sweep_dir.name
    return tracking.for_run(
        log["kind"], run_dir, log_dir=log_dir, extra_hparams=job.get("axes"), group=group
    )


def execute(job: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Train (or resume) the run `job` describes: {"run_dir", "config" (a config dict)}, and
    optionally "log" and "axes" (module docstring)."""
    start = time.perf_counter()
    run_dir = Path(job["run_dir"])
    try:
        from interp import training
        from interp.config import RunConfig

        tracker = _tracker(job, run_dir)
        if _has_checkpoint(run_dir):
            result = training.resume(run_dir, progress=progress, tracker=tracker)
            resumed = True
        else:
            config = RunConfig.from_dict(job["config"])
            _reset_global_rngs(config.train.seed)
            _clear_aborted_start(run_dir)
            overwrite = run_dir.exists() and any(run_dir.iterdir())
            result = training.train(
                config, run_dir, progress=progress, overwrite=overwrite, tracker=tracker
            )
            resumed = False
    except Exception as exc:  # noqa: BLE001 (isolation: one run's failure is recorded, not raised)
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=-4),
            "seconds": round(time.perf_counter() - start, 3),
        }
    return {
        "status": "done",
        "final_step": result.final_step,
        "stop_reason": result.stop_reason,
        "collapses": len(result.collapses),
        "resumed": resumed,
        "seconds": round(time.perf_counter() - start, 3),
    }
