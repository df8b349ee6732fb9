"""End to end through the CLI's main function: train -> real run folder -> analyze."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from interp.cli import main
from interp.runs import load_run
from tests.sweep_helpers import TINY_MODEL, set_flags

TINY = set_flags(*TINY_MODEL, "train.steps=30", "train.ckpt_every=10", "train.ckpt_log_until=5")


def test_train_writes_a_self_describing_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "demo", "--out", str(out), "-q", *TINY]) == 0
    assert "trained 30 steps" in capsys.readouterr().out
    run = load_run(out)
    assert run.config.task.p == 11 and run.config.name == "demo"
    assert run.steps[0] == 0 and run.steps[-1] == 30 and 10 in run.steps
    assert [r["step"] for r in run.metrics] == run.steps
    row = run.metrics[-1]
    for key in (
        "train_loss",
        "test_loss",
        "train_acc",
        "test_acc",
        "sum_sq_weights",
        "circuit_score",
        "lr",
        "gini_embed",
        "gini_unembed",
        "train_key_frequencies",
    ):
        assert key in row
    assert any(k.startswith("sum_sq/") for k in row)
    model = run.model_at(30)
    assert tuple(model.W_E.shape) == (12, 16)
    # Known answers: the logged weight norm is the checkpoint's, and its parts add up to it.
    weights = run.weights_at(30)
    expected = sum(float(w.double().pow(2).sum()) for w in weights.values())
    assert row["sum_sq_weights"] == pytest.approx(expected, rel=1e-6)
    parts = sum(v for k, v in row.items() if k.startswith("sum_sq/"))
    assert parts == pytest.approx(row["sum_sq_weights"], rel=1e-6)


def test_analyze_writes_table_summary_and_figures(tiny_run, capsys):
    code = main(["analyze", str(tiny_run), "--json"])
    assert code == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_checkpoints"] == len(load_run(tiny_run).steps)
    assert set(info["phases"]) == {"memorization", "circuit_formation", "cleanup", "stable"}
    assert isinstance(info["key_frequencies"], list)
    with open(info["table"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == info["n_checkpoints"]
    for column in (
        "step",
        "train_acc",
        "test_acc",
        "train_loss",
        "test_loss",
        "circuit_score",
        "restricted_loss",
        "excluded_loss",
        "gini_embed",
        "sum_sq_weights",
        "dla/total",
        "attn/L0H0->a",
    ):
        assert column in rows[0], column
    assert all(0.0 <= float(r["circuit_score"]) <= 1.0 for r in rows)
    # Known answers: the analysis' own forward pass gives the trainer's logged accuracies and
    # losses at every checkpoint (another code path over the same weights and split).
    logged = {m["step"]: m for m in load_run(tiny_run).metrics}
    for r in rows:
        for column in ("train_acc", "test_acc", "train_loss", "test_loss", "sum_sq_weights"):
            expected = logged[int(r["step"])][column]
            assert float(r[column]) == pytest.approx(expected, rel=1e-4, abs=1e-6), column
    page = open(info["figures"], encoding="utf-8").read()
    assert page.count("plotly.js v") <= 1 and "Transition timeline" in page


def test_analyze_parts_select_columns(tiny_run, capsys):
    assert main(["analyze", str(tiny_run), "--attention", "--no-figures", "--json"]) == 0
    said = capsys.readouterr()
    info = json.loads(said.out)
    # The progress bar (stderr) names the parts and counts checkpoints.
    n = len(load_run(tiny_run).steps)
    assert "analyze attention" in said.err and f"0/{n} " in said.err
    assert main(["analyze", str(tiny_run), "--attention", "--no-figures", "-q"]) == 0
    assert "analyze attention" not in capsys.readouterr().err
    with open(info["table"], newline="") as handle:
        header = next(csv.reader(handle))
    assert (
        "attn/L0H0->=" in header and "restricted_loss" not in header and "dla/total" not in header
    )


def test_attribution_sums_to_the_correct_logit(tiny_run):
    from circuits.pipeline.analyze import analyze_run

    result = analyze_run(load_run(tiny_run), ("attribution",))
    for row in result.rows:
        parts = sum(v for k, v in row.items() if k.startswith("dla/") and k != "dla/total")
        assert parts == pytest.approx(row["dla/total"], abs=1e-4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "nope", "--out", "X"], "unknown preset"),
        (["train", "demo", "--out", "X", "--set", "train.lr=-1"], "train.lr"),
        (
            ["train", "demo", "--out", "X", "--set", "task.operation=div", "--set", "task.p=12"],
            "task.p",
        ),
        (["train", "demo"], "--out"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    argv = [str(tmp_path / a) if a == "X" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "X").exists()


def test_help_does_not_import_torch():
    code = "import sys, interp.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
