"""Real training runs: a memorizer scores low; the demo groks and circuit_score leads test
accuracy."""

from __future__ import annotations

import pytest

from circuits.families.modular.circuit_score import first_crossing
from interp.cli import main
from interp.presets import PRESETS
from interp.runs import load_run
from interp.training import train
from tests.conftest import tiny_config


def test_a_model_trained_on_random_labels_memorizes_and_scores_low(tmp_path):
    config = tiny_config(
        task__p=23,
        task__shuffle_labels=True,
        train__weight_decay=0.0,
        train__lr=1e-2,
        train__steps=150,
        model__d_model=32,
        model__d_head=16,
        model__d_mlp=64,
    )
    train(config, tmp_path / "mem", progress=False)
    rows = load_run(tmp_path / "mem").metrics
    assert rows[-1]["train_acc"] == 1.0 and rows[-1]["test_acc"] < 0.15
    assert max(r["circuit_score"] for r in rows if r["train_acc"] == 1.0) < 0.2


@pytest.mark.slow
def test_demo_groks_and_circuit_score_leads(tmp_path, capsys):
    run_dir = tmp_path / "demo"
    assert main(["train", "demo", "--out", str(run_dir), "-q"]) == 0
    rows = load_run(run_dir).metrics
    assert rows[-1]["test_acc"] >= 0.99
    score_half, test_half = (
        first_crossing(rows, "circuit_score", 0.5),
        first_crossing(rows, "test_acc", 0.5),
    )
    assert score_half is not None and score_half < test_half
    assert rows[-1]["circuit_score"] > 0.9
    assert main(["analyze", str(run_dir), "--json", "--no-figures"]) == 0
    capsys.readouterr()


@pytest.mark.slow
def test_memorization_control_stays_low(tmp_path):
    config = PRESETS["demo-memorize"]
    train(config, tmp_path / "mem", progress=False)
    rows = load_run(tmp_path / "mem").metrics
    assert rows[-1]["train_acc"] == 1.0
    assert max(r["circuit_score"] for r in rows if r["train_acc"] == 1.0) < 0.2


@pytest.mark.slow
@pytest.mark.parametrize("seed", [999, 1000])
def test_mod_add_fast_groks_and_stays_grokked(tmp_path, seed):
    """The preset groks within 500 steps and holds >= 99 % on train and test to 3x that step
    with its early stop off (without its weight-norm floor every seed collapsed)."""
    from experiments.stability import summarize

    config = PRESETS["mod-add-fast"].with_overrides(
        [f"model.seed={seed}", "train.stop_at_val_acc=0"]
    )
    result = train(config, tmp_path / "fast", progress=False)
    summary = summarize(load_run(tmp_path / "fast").metrics)
    assert summary["grok_step"] is not None and summary["grok_step"] <= 500
    assert summary["stable"] and result.collapses == ()
    assert summary["min_circuit_score_after"] > 0.9
