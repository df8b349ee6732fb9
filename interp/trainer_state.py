"""Trainer state on disk: everything beyond the weights that exact resume needs.

A checkpoint's weights alone cannot continue a run bit for bit: AdamW's moment
estimates, the learning-rate schedule's position, the data-order generator and the
current epoch's permutation, and the Grokfast filter's gradient history all change the
next update. They are saved next to the latest checkpoint as

    RUN_DIR/trainer/state_000000100.safetensors   tensors (optimizer moments, RNG states,
                                                 batch order, filter history)
    RUN_DIR/trainer/state_000000100.json          plain values (step, cursor, scheduler and
                                                 param-group settings) + the sha256 above

Both are written atomically before the manifest names their step, and older states are
deleted only after it does, so the state for the manifest's last step always exists.
Nothing is pickled; the JSON file is written last and is what makes a state count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp import runs

FORMAT_VERSION = 1
_STATE_RE = re.compile(r"^state_(\d{9})\.json$")

# Prefixes of the tensor keys in the safetensors file.
_OPTIM = "optim."
_FILTER = "filter."
_RNG_TORCH = "rng.torch"
# The batch sampler's own keys (`interp.sampling`) are stored alongside.


def state_files(step: int) -> tuple[str, str]:
    """(tensors, json) file names, relative to the run folder, of the trainer state at `step`."""
    stem = f"{runs.TRAINER_STATE_DIR}/state_{step:09d}"
    return f"{stem}.safetensors", f"{stem}.json"


@dataclass(frozen=True)
class TrainerState:
    """What `capture` reads from a Trainer and `restore` writes back."""

    step: int
    tensors: dict[str, Tensor]
    meta: dict[str, Any]


def capture(trainer) -> TrainerState:
    """Snapshot the optimizer, scheduler, RNGs, batch order and gradient filter of `trainer`."""
    tensors: dict[str, Tensor] = {}
    optim = trainer.optimizer.state_dict()
    for index, per_param in optim["state"].items():
        for key, value in per_param.items():
            tensors[f"{_OPTIM}{index}.{key}"] = torch.as_tensor(value).detach().cpu().clone()
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
        for g in optim["param_groups"]
    ]
    if trainer.grad_filter is not None:
        for key, value in trainer.grad_filter.state_dict().items():
            tensors[_FILTER + key] = value.detach().cpu().clone()
    tensors[_RNG_TORCH] = torch.get_rng_state()
    sampler_tensors, sampler_meta = trainer.sampler.state()
    tensors.update(sampler_tensors)
    meta = {
        **sampler_meta,
        "format": FORMAT_VERSION,
        "step": trainer.step,
        "param_groups": groups,
        "scheduler": trainer.scheduler.state_dict(),
        "grad_filter": trainer.config.train.grad_filter,
        "elapsed_s": trainer.elapsed_s(),
        "norm_floor_armed": trainer.norm_floor_armed,
        # The floor's value: relative to the run's starting weights (`train.init_from` too).
        "norm_floor": trainer.norm_floor,
    }
    return TrainerState(step=trainer.step, tensors=tensors, meta=meta)


def save(run_dir: Path, state: TrainerState) -> None:
    """Write tensors, then the JSON that vouches for them (with their sha256)."""
    tensor_file, json_file = state_files(state.step)
    digest = runs.save_tensors(
        run_dir / tensor_file, state.tensors, metadata={"step": str(state.step)}
    )
    runs.atomic_write_json(
        run_dir / json_file, {**state.meta, "tensors": tensor_file, "sha256": digest}
    )


def saved_steps(run_dir: Path) -> list[int]:
    """Steps whose trainer-state JSON exists (the JSON is written last), ascending."""
    folder = run_dir / runs.TRAINER_STATE_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STATE_RE.match(p.name)))


def remove_all_but(run_dir: Path, keep_step: int) -> None:
    """Delete every trainer state (and stray temp file) except the one at `keep_step`."""
    folder = run_dir / runs.TRAINER_STATE_DIR
    if not folder.is_dir():
        return
    keep = {Path(name).name for name in state_files(keep_step)}
    for path in folder.iterdir():
        if path.is_file() and path.name not in keep:
            path.unlink(missing_ok=True)


def load(run_dir: Path, step: int) -> TrainerState:
    """Read the trainer state saved with the checkpoint at `step`; RunError names the file."""
    tensor_file, json_file = state_files(step)
    meta = runs.read_json(run_dir / json_file)
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT_VERSION
        or meta.get("step") != step
    ):
        raise runs.RunError(
            f"{run_dir / json_file}: not a trainer state for step {step} (format {FORMAT_VERSION})"
        )
    tensors = runs.load_tensors(run_dir / tensor_file, meta.get("sha256"))
    return TrainerState(step=step, tensors=tensors, meta=meta)


def restore(trainer, state: TrainerState) -> None:
    """Put a captured state back into a freshly built Trainer of the same config.

    A state that does not fit the trainer (edited, from another config or version) raises
    RunError naming the state file, not an error from deep inside torch.
    """
    try:
        _restore(trainer, state)
    except runs.RunError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        name = state_files(state.step)[1]
        raise runs.RunError(
            f"{trainer.run_dir / name}: trainer state does not fit this run ({type(exc).__name__}: "
            f"{exc})"
        ) from None


def _restore(trainer, state: TrainerState) -> None:
    meta, tensors = state.meta, state.tensors
    if meta["grad_filter"] != trainer.config.train.grad_filter:
        raise runs.RunError(
            f"trainer state at step {state.step} was saved with "
            f"grad_filter={meta['grad_filter']!r}, "
            f"the config says {trainer.config.train.grad_filter!r}"
        )
    per_param: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(_OPTIM):
            index, name = key[len(_OPTIM) :].split(".", 1)
            per_param.setdefault(int(index), {})[name] = value
    groups = [
        {k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]
    ]
    trainer.optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    trainer.scheduler.load_state_dict(meta["scheduler"])
    if trainer.grad_filter is not None:
        trainer.grad_filter.load_state_dict(
            {
                k[len(_FILTER) :]: v.to(trainer.device)
                for k, v in tensors.items()
                if k.startswith(_FILTER)
            }
        )
    torch.set_rng_state(tensors[_RNG_TORCH])
    trainer.sampler.restore(tensors, meta)
    trainer.step = state.step
    # States written before the floor existed have no flag: a run without a floor needs none.
    trainer.norm_floor = float(meta.get("norm_floor", trainer.norm_floor))
    trainer.norm_floor_armed = bool(meta.get("norm_floor_armed", False)) and trainer.norm_floor > 0
