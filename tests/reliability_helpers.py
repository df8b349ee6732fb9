"""Shared helpers for the reliability tests: their settings of the tiny config and run-folder
checks."""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from interp.runs import load_run
from tests.conftest import tiny_config

# Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than two
# threads fighting other processes (measured: 40 steps in 1.0 s vs 14 s).
torch.set_num_threads(1)


#: The reliability tests' settings of the one tiny config (`tests.conftest.tiny_config`): 40
#: steps with a checkpoint every 10 (no log-spaced ones), so kills and resumes land between
#: known checkpoints.
RESUME_SETTINGS = {
    "task__split_seed": 3,
    "model__seed": 5,
    "train__steps": 40,
    "train__ckpt_every": 10,
    "train__ckpt_log_until": 0,
    "train__seed": 7,
}
#: `tiny_config` with `RESUME_SETTINGS`; further `section__field=value` overrides apply on top.
resume_config = functools.partial(tiny_config, **RESUME_SETTINGS)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    run = load_run(run_dir)
    return run.weights_at(run.steps[-1])


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def check_listed_checkpoints(run_dir: Path) -> list[int]:
    """Every checkpoint the manifest lists exists, matches its sha256 and loads; returns the
    steps."""
    manifest = json.loads((run_dir / "manifest.json").read_text())["checkpoints"]
    run = load_run(run_dir)
    for entry in manifest:
        data = (run_dir / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
    loaded = [step for step, _model in run.iter_models()]  # raises on any that does not load
    assert loaded == [e["step"] for e in manifest]
    return loaded


# -- child processes for the kill and live-analysis tests --------------------------------------

_PRELOAD = [
    "tests.reliability_helpers",
    "interp.training",
    "transformer_lens.model_bridge",
    "transformer_lens.model_bridge.sources",
]


def training_context():
    """A multiprocessing context whose children start with torch and TransformerLens imported.

    A fresh interpreter spends 5-15 s importing them on a busy 2-core machine; the
    forkserver imports once and forks a child per kill point in milliseconds. The child is
    a real separate process, so SIGKILL lands at an arbitrary instruction, as in production.
    """
    import multiprocessing

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the forkserver
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def train_or_resume(config_dict: dict, run_dir: str, fresh: bool) -> None:
    """Child-process entry point: train `config_dict` into `run_dir`, or resume it."""
    from interp.config import RunConfig
    from interp.training import resume, train

    torch.set_num_threads(1)
    if fresh:
        train(RunConfig.from_dict(config_dict), run_dir, progress=False)
    else:
        resume(run_dir, progress=False)


def listed_steps(run_dir: Path) -> list[int]:
    """Steps the manifest lists right now ([] before the first checkpoint)."""
    try:
        return [
            e["step"] for e in json.loads((run_dir / "manifest.json").read_text())["checkpoints"]
        ]
    except FileNotFoundError:
        return []
