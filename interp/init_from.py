"""Start a run from another run's weights (`train.init_from`, `interp train --init-from`).

"RUN_DIR" means that run's last complete checkpoint, "RUN_DIR@STEP" a given one. Only the
weights are taken: the optimizer, the schedule and the data order start fresh, as the
config says. The run records the resolved source (absolute folder and step) in its
config.json, so it says where it came from even if the working directory changes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from interp import retention, runs
from interp.console import warn
from interp.errors import TrainingError
from interp.optimizer import total_norm


def parse(spec: str) -> tuple[Path, int | None]:
    """("RUN_DIR", None) or ("RUN_DIR", STEP) from "RUN_DIR[@STEP]"."""
    path, _, step = spec.rpartition("@") if "@" in spec else (spec, "", "")
    if step and not step.isdigit():
        raise TrainingError(f"train.init_from: {spec!r}: expected RUN_DIR or RUN_DIR@STEP")
    return Path(path), int(step) if step else None


def load_into(model, spec: str) -> str:
    """Load the weights `spec` names into `model`; returns the resolved "ABS_RUN_DIR@STEP"."""
    path, step = parse(spec)
    try:
        run = runs.load_run(path)
    except runs.RunError as exc:
        raise TrainingError(f"train.init_from: {exc}") from None
    if not run.steps:
        raise TrainingError(f"train.init_from: {runs.no_checkpoints_message(path)}")
    step = run.steps[-1] if step is None else step
    if step not in run.steps:
        raise TrainingError(
            f"train.init_from: {path} has no complete checkpoint at step {step}; it has "
            f"{', '.join(map(str, run.steps[-5:]))}{' …' if len(run.steps) > 5 else ''} at the end"
        )
    try:
        run.load_weights_into(model, step)
    except runs.RunError as exc:
        raise TrainingError(
            f"train.init_from: {exc} (the model config must match the source run's)"
        ) from None
    return f"{path.resolve()}@{step}"


def start(trainer) -> None:
    """A fresh run's start (`interp.training.Trainer`): the source weights if its config names
    one, recorded resolved in the config it writes, and the weight-norm floor taken from them
    (the floor is relative to the run's starting weights; it is saved with the trainer state,
    so a resumed run does not need the source any more)."""
    train = trainer.config.train
    if not train.init_from:
        return
    resolved = load_into(trainer.model, train.init_from)
    source, _, step = resolved.rpartition("@")
    try:  # the source run keeps this checkpoint whatever its retention policy
        retention.pin(Path(source), int(step), trainer.run_dir)
    except OSError as exc:
        warn(f"warning: train.init_from: cannot pin step {step} in {source}: {exc}")
    trainer.config = replace(trainer.config, train=replace(train, init_from=resolved))
    if train.weight_norm_floor:
        trainer.norm_floor = train.weight_norm_floor * total_norm(trainer.params)
