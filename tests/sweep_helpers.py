"""Tiny sweep specs shared by the sweep tests (p = 11, d_model 16: a run takes a second)."""

from __future__ import annotations

import json
from pathlib import Path

#: The tiny modular task and model (p = 11, d_model 16) as `--set` overrides of `demo`.
TINY_MODEL = [
    "task.p=11",
    "task.train_frac=0.5",
    "model.d_model=16",
    "model.n_heads=2",
    "model.d_head=8",
    "model.d_mlp=32",
]
TINY_SET = [
    *TINY_MODEL,
    "train.lr=3e-3",
    "train.ckpt_every=20",
    "train.ckpt_log_until=10",
]


#: The tiny fixed-corpus walk as `--set` overrides of the `graph-walk` preset (12 nodes, 24
#: edges, context 8, a 64-walk corpus, d_model 16), for sweep specs and the CLI.
WALK_SET = [
    "task.n_nodes=12",
    "task.n_edges=24",
    "task.context=8",
    "task.eval_walks=32",
    "task.data=fixed",
    "task.corpus_walks=64",
    "model.d_model=16",
    "model.n_heads=2",
    "model.d_head=8",
    "model.d_mlp=32",
    "train.batch_size=16",
    "train.lr=0.03",
    "train.warmup_steps=0",
    "train.ckpt_log_until=0",
]


def set_flags(*settings: str) -> list[str]:
    """`--set S` for each setting, as the CLI takes them."""
    return [flag for setting in settings for flag in ("--set", setting)]


def write_spec(folder: Path, body: str, steps: int = 60, name: str = "spec.toml") -> Path:
    """A spec on the tiny demo: `body` adds the axes (TOML)."""
    fixed = json.dumps([*TINY_SET, f"train.steps={steps}"])
    path = folder / name
    path.write_text(f'base = "demo"\nset = {fixed}\n{body}\n', encoding="utf-8")
    return path


def manifest(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def weights_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every checkpoint file's bytes, by name."""
    return {p.name: p.read_bytes() for p in sorted((run_dir / "checkpoints").glob("*"))}
