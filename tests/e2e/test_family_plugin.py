"""A task family defined entirely in this file, registered from outside the package, then
trained, analyzed and reported through the CLI entry point with no change to any project
module: the proof that families are plugins (`interp.registry`).

The toy task: `a b =` -> a (copy the first token). Its family declares its own config
field, a preset, a training progress measure, one analysis part with a typed result, and a
report section; phases come from the default definition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from circuits.families.base import AnalyzedFamily, ReportView
from interp.config import ModelConfig, RunConfig, TrainConfig
from interp.config_base import TaskConfig, check
from interp.registry import AnalysisPart, get_family, register

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CopyTask(TaskConfig):
    kind = "toy_copy"
    n_symbols: int = 8
    train_frac: float = 0.5

    def __post_init__(self) -> None:
        check(self.n_symbols >= 2, "task.n_symbols", f"must be >= 2, got {self.n_symbols}")

    @property
    def d_vocab(self) -> int:
        return self.n_symbols + 1

    @property
    def d_vocab_out(self) -> int:
        return self.n_symbols

    @property
    def n_ctx(self) -> int:
        return 3


@dataclass(frozen=True)
class MarginCheckpoint:
    """The toy part's typed result: the mean margin of the correct logit, per split."""

    step: int
    base: dict[str, Any]
    margin: dict[str, float]
    row: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "row",
            {"step": self.step, **self.base, **{f"margin_{k}": v for k, v in self.margin.items()}},
        )


def _margin(logits, labels) -> float:
    import torch

    correct = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], -torch.inf).amax(dim=1)
    return float((correct - others).mean())


class CopyFamily(AnalyzedFamily):
    kind = "toy_copy"
    config_class = CopyTask
    title = "copy the first token (a test family)"
    parts = (AnalysisPart("copy_margin", "Mean margin of the correct logit per split."),)

    def presets(self) -> dict[str, RunConfig]:
        return {
            "toy-copy": RunConfig(
                name="toy-copy",
                task=CopyTask(split_seed=0),
                model=ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=0),
                train=TrainConfig(
                    steps=150, lr=1e-2, weight_decay=0.1, ckpt_every=50, ckpt_log_until=0
                ),
            )
        }

    def build_task(self, config: CopyTask):
        import torch

        from interp.tasks.base import TaskData

        n = config.n_symbols
        a, b = torch.arange(n).repeat_interleave(n), torch.arange(n).repeat(n)
        tokens = torch.stack([a, b, torch.full_like(a, n)], dim=1)
        order = torch.randperm(n * n, generator=torch.Generator().manual_seed(config.split_seed))
        n_train = int(config.train_frac * n * n)
        splits = {"train": order[:n_train].sort().values, "test": order[n_train:].sort().values}
        return TaskData(
            tokens=tokens, labels=a, splits=splits, token_names=(*map(str, range(n)), "=")
        )

    def evaluators(self, config) -> list:
        def margin(model, task, by_split):
            logits, labels = by_split["train"]
            return {"circuit_score": min(max(_margin(logits, labels) / 5, 0.0), 1.0)}

        return [margin]

    def analyze(self, run, parts, steps, *, workers, progress, figures=True):
        from circuits.pipeline.analyze import analyze_each, basic_columns

        def analyze_one(model, step):
            base, by_split = basic_columns(model, run, self)
            margins = {s: _margin(*by_split[s]) for s in by_split} if "copy_margin" in parts else {}
            return MarginCheckpoint(step, base, margins)

        return analyze_each(
            run, self, parts, steps, lambda: analyze_one, workers=workers, progress=progress
        )

    def summary_lines(self, info) -> list[str]:
        return [f"toy copy: final test accuracy {info['final']['test_acc']:.3f}"]

    def report_views(self, result, context) -> list[ReportView]:
        def plot():
            import plotly.graph_objects as go

            cps = [c for c in result.checkpoints if c.margin]
            if not cps:
                return None
            return go.Figure(
                [
                    go.Scatter(x=[c.step for c in cps], y=[c.margin[s] for c in cps], name=s)
                    for s in cps[0].margin
                ]
            )

        return [ReportView("Copy margin over training", plot)]


register(CopyFamily())


def test_toy_family_trains_analyzes_and_reports_through_the_cli(tmp_path, capsys):
    from interp.cli import main

    run_dir = tmp_path / "toy"
    assert (
        main(["train", "toy-copy", "--out", str(run_dir), "-q", "--set", "task.n_symbols=6"]) == 0
    )
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["task"] == {
        "kind": "toy_copy",
        "split_seed": 0,
        "shuffle_labels": False,
        "n_symbols": 6,
        "train_frac": 0.5,
    }
    assert saved["family_module"] == __name__
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(
        "circuit_score" in row for row in metrics
    )  # the family's evaluator ran while training

    capsys.readouterr()
    assert main(["analyze", str(run_dir), "--copy-margin", "-q"]) == 0
    out = capsys.readouterr().out
    assert "toy copy: final test accuracy" in out
    summary = json.loads((run_dir / "analysis" / "summary.json").read_text())
    assert summary["kind"] == "toy_copy" and summary["parts"] == ["copy_margin"]
    assert set(summary["phases"]) == {"memorization", "generalization", "stable"}
    table = (run_dir / "analysis" / "table.csv").read_text().splitlines()
    assert "margin_train" in table[0].split(",") and len(table) == 1 + 4  # steps 0, 50, 100, 150
    page = (run_dir / "analysis" / "report.html").read_text(encoding="utf-8")
    assert "Copy margin over training" in page and "Transition timeline" in page
    assert "Circuit graph" not in page and "Fourier" not in page  # no modular views leak in

    # A part of another family is refused, naming the flag.
    assert main(["analyze", str(run_dir), "--fourier", "-q"]) == 2
    assert "--fourier" in capsys.readouterr().err


def test_a_new_process_finds_the_family_from_config_json(tmp_path):
    """Registration reaches every process: a fresh interpreter that never imported this file
    analyzes the run because config.json records the family's module."""
    from interp.cli import main

    run_dir = tmp_path / "toy"
    assert main(["train", "toy-copy", "--out", str(run_dir), "-q", "--set", "train.steps=50"]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = (
        "import sys; from interp.cli import main; "
        "sys.exit(main(['analyze', sys.argv[1], '--json', '-q', '--no-figures']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "toy_copy"


def test_unknown_family_module_is_a_clear_error(tmp_path):
    from interp.config import RunConfig
    from interp.config_base import ConfigError

    with pytest.raises(
        ConfigError,
        match="task.kind 'nope'.*cannot import the task family's module 'no_such.module'",
    ):
        RunConfig.from_dict({"family_module": "no_such.module", "task": {"kind": "nope"}})
    assert get_family("toy_copy").title.startswith("copy")
