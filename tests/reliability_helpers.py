"""Shared helpers for the reliability tests: a tiny config factory and run-folder checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from interp.config import ModelConfig, RunConfig, TaskConfig, TrainConfig
from interp.runs import load_run

# Tiny models on a shared 2-core machine: one intra-op thread is ~10x faster than two
# threads fighting other processes (measured: 40 steps in 1.0 s vs 14 s).
torch.set_num_threads(1)


def tiny_config(**overrides) -> RunConfig:
    """p = 11, 1 layer, d_model 16: trains a step in about a millisecond on one core.

    Overrides are `section__field=value`, e.g. `train__grad_filter="ema"`.
    """
    sections = {"task": {"p": 11, "train_frac": 0.5, "split_seed": 3},
                "model": {"d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32, "seed": 5},
                "train": {"steps": 40, "lr": 3e-3, "ckpt_every": 10, "ckpt_log_until": 0, "seed": 7}}
    for key, value in overrides.items():
        section, name = key.split("__")
        sections[section][name] = value
    return RunConfig(
        task=TaskConfig(**sections["task"]),
        model=ModelConfig(**sections["model"]),
        train=TrainConfig(**sections["train"]),
        name="tiny",
    )


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    run = load_run(run_dir)
    return run.weights_at(run.steps[-1])


def assert_bit_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


def check_listed_checkpoints(run_dir: Path) -> list[int]:
    """Every checkpoint the manifest lists exists, matches its sha256 and loads; returns the steps."""
    manifest = json.loads((run_dir / "manifest.json").read_text())["checkpoints"]
    run = load_run(run_dir)
    for entry in manifest:
        data = (run_dir / entry["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
        run.model_at(entry["step"])
    return [e["step"] for e in manifest]
