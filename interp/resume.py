"""Continuing a stopped or killed run: a trainer restored exactly at its last complete
checkpoint (weights, optimizer, schedule, RNG and data order, filter state; the split checked
against the config), with what a killed process wrote after that checkpoint removed.
`interp.training.resume` and `Trainer.from_run_dir` are the entry points."""

from __future__ import annotations

from pathlib import Path

import torch

from interp import run_writer, runs, trainer_state
from interp.errors import TrainingError


def restored_trainer(cls, run_dir: Path, *, evaluators=None, progress=True, tracker=None):
    """A `cls` (an `interp.training.Trainer`) positioned exactly at the run's last complete
    checkpoint. It holds the run's writer lock from here until its `run()` returns, so nothing
    else can write the folder between reading the state and continuing from it."""
    try:
        run = runs.load_run(run_dir)
    except runs.RunError as exc:
        raise TrainingError(f"resume=True: {exc}") from None
    if not run.steps:
        raise TrainingError(
            f"resume=True: {runs.no_checkpoints_message(run_dir)}; or start again with "
            "overwrite=True"
        )
    try:
        lock_fd = runs.acquire_writer_lock(run_dir)
    except (runs.RunError, OSError) as exc:
        raise TrainingError(f"resume=True: {exc}") from None
    try:
        trainer = _restored(cls, run_dir, evaluators, progress, tracker)
    except BaseException:
        runs.release_writer_lock(lock_fd)
        raise
    trainer.lock_fd_held = lock_fd
    return trainer

def _restored(cls, run_dir: Path, evaluators, progress, tracker):
    # Read again now that we hold the writer lock: nobody can change the folder under us.
    run = runs.load_run(run_dir)
    step = run.steps[-1]
    trainer = cls(
        run.config, run_dir, evaluators=evaluators, progress=progress, tracker=tracker
    )
    try:
        saved = runs.load_tensors(run_dir / runs.SPLIT_FILE)
        for name, index in trainer.task.splits.items():
            if not torch.equal(saved.get(runs.SPLIT_PREFIX + name, torch.empty(0)), index):
                raise runs.RunError(
                    f"{run_dir / runs.SPLIT_FILE}: split {name!r} differs from the one the "
                    "config generates"
                )
        run.load_weights_into(trainer.model, step)
        state = trainer_state.load(run_dir, step)
        trainer_state.restore(trainer, state)
    except runs.RunError as exc:
        raise TrainingError(
            f"resume=True: {run_dir}: cannot resume exactly from step {step}: {exc}"
        ) from None
    trainer.manifest = list(run.manifest)
    trainer.metrics = [r for r in run.metrics if int(r["step"]) <= step]
    trainer.time_offset = float(state.meta.get("elapsed_s", 0.0))
    # Forget what a killed process wrote after the last complete checkpoint.
    try:
        run_writer.write_metrics(run_dir, trainer.metrics)
        trainer_state.remove_all_but(run_dir, step)
        runs.remove_temp_files(run_dir)
    except OSError as exc:
        raise TrainingError(
            f"resume=True: {run_dir}: cannot tidy the run folder: {exc}"
        ) from None
    return trainer
