"""Collapse after grokking: the rule, the trainer's warning and event, the `best` pointer,
`--stop-on-collapse`, the weight-norm floor, and circuit_score on collapsed checkpoints.

The real collapse is the one the `mod-add-fast` recipe had before its floor: ⊥Grad removes
the gradient's push to regrow the weights while weight decay keeps shrinking them. A tiny
model (p = 23) shows it in a few seconds: it groks to ~99 % train accuracy by step 125 and
falls to ~25 % by step 300.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from circuits.analyses.activations import final_position_activations
from circuits.families.modular.circuit_score import circuit_score
from interp.cli import main
from interp.collapse import CollapseRule, best_checkpoint, detect_collapses
from interp.runs import MANIFEST_FILE, load_run, read_best
from interp.training import train
from tests.conftest import tiny_config

COLLAPSING = dict(
    task__p=23,
    task__train_frac=0.6,
    model__d_model=32,
    model__d_head=16,
    model__d_mlp=128,
    train__lr=1e-2,
    train__steps=300,
    train__ckpt_every=25,
    train__ckpt_log_until=0,
    train__orthogonal_grad=True,
    train__grad_filter="ema",
)


def _rows(values, key="train_acc"):
    return [{"step": 10 * i, key: v} for i, v in enumerate(values)]


def test_rule_fires_on_the_third_checkpoint_down_and_re_arms_after_recovery():
    rule = CollapseRule("train_acc")
    events = detect_collapses(_rows([0.2, 1.0, 0.7, 0.6, 0.5, 0.4, 1.0, 0.5, 0.5, 0.5]), rule)
    assert [(e.step, e.first_step, e.best_step) for e in events] == [(40, 20, 10), (90, 70, 10)]
    assert events[0].value == 0.5 and events[0].best == 1.0


def test_rule_ignores_small_dips_short_dips_and_missing_values():
    rule = CollapseRule("train_acc")
    assert detect_collapses(_rows([1.0, 0.85, 0.81, 0.85, 0.9]), rule) == []  # never 20 points down
    assert detect_collapses(_rows([1.0, 0.5, 0.5, 1.0, 0.5, 0.5]), rule) == []  # two in a row only
    assert (
        detect_collapses(_rows([1.0, 0.5, math.nan, 0.5]), rule) == []
    )  # NaN is not a checkpoint down
    loss_rule = CollapseRule("train_loss", drop=1.0, higher_is_better=False)
    assert [
        e.step for e in detect_collapses(_rows([3.0, 0.1, 2.0, 2.5, 3.0], "train_loss"), loss_rule)
    ] == [40]


def test_best_checkpoint_never_reads_test_metrics():
    rows = [
        {"step": 0, "train_loss": 3.0, "val_acc": 0.1, "val_loss": 3.0, "test_acc": 0.1},
        {"step": 10, "train_loss": 0.5, "val_acc": 0.9, "val_loss": 0.4, "test_acc": 0.7},
        {"step": 20, "train_loss": 0.1, "val_acc": 0.9, "val_loss": 0.3, "test_acc": 0.6},
        {"step": 30, "train_loss": 0.01, "val_acc": 0.5, "val_loss": 2.0, "test_acc": 0.99},
    ]
    best = best_checkpoint(rows, ("train",), has_validation=True)
    assert (best.step, best.criterion) == (20, "val_acc")  # tie on val_acc: lower val_loss
    best = best_checkpoint(rows, ("train",), has_validation=False)
    assert (best.step, best.criterion) == (30, "train_loss")


@pytest.fixture(scope="module")
def collapsed_run(tmp_path_factory):
    """The tiny model trained with ⊥Grad + weight decay and no floor: it groks, then collapses."""
    config = tiny_config(**COLLAPSING)
    run_dir = tmp_path_factory.mktemp("collapse") / "run"
    result = train(config, run_dir, progress=False)
    return run_dir, result


def test_trainer_records_warns_and_points_best_before_the_collapse(collapsed_run):
    run_dir, result = collapsed_run
    rows = load_run(run_dir).metrics
    peak = max(r["train_acc"] for r in rows)
    assert peak > 0.95 and rows[-1]["train_acc"] < 0.5  # grokked, then collapsed
    fired = [r for r in rows if r.get("events")]
    assert len(fired) == 1 and len(result.collapses) == 1
    event = fired[0]["events"][0]
    assert event["kind"] == "collapse" and event["step"] == result.collapses[0].step
    assert event["value"] < event["best"] - 0.2 and event["best"] == peak
    # The `best` pointer: no validation split here, so the lowest training loss, before the fall.
    best = read_best(run_dir)
    assert best["criterion"] == "train_loss" and best["step"] < event["first_step"]
    assert json.loads((run_dir / MANIFEST_FILE).read_text())["best"]["step"] == best["step"]


def test_collapsed_checkpoints_no_longer_score_as_a_circuit(collapsed_run):
    run_dir, _ = collapsed_run
    rows = load_run(run_dir).metrics
    best_row = max(rows, key=lambda r: r["train_acc"])
    assert best_row["circuit_score"] > 0.9
    last = rows[-1]
    assert last["train_acc"] < 0.3 and last["circuit_score"] < 0.3
    # What the old score (the concentration alone) would have said: still a circuit.
    run = load_run(run_dir)
    task = run.task
    train_index = task.splits["train"]
    logits = final_position_activations(run.model_at(last["step"]), task.tokens[train_index]).logits
    result = circuit_score(logits, task.labels[train_index], "add", 23)
    assert result.concentration > 0.8 and result.score == pytest.approx(last["circuit_score"])


def test_shrinking_a_grokked_model_to_chance_drives_the_score_below_0_3(collapsed_run):
    """The issue's construction: take the grokked checkpoint, shrink every weight until train
    accuracy is near chance, and the score must follow."""
    run_dir, _ = collapsed_run
    run = load_run(run_dir)
    task, p = run.task, 23
    train_index = task.splits["train"]
    step = max(run.metrics, key=lambda r: r["train_acc"])["step"]
    model = run.model_at(step)

    def score():
        logits = final_position_activations(model, task.tokens[train_index]).logits
        return circuit_score(logits, task.labels[train_index], "add", p), logits

    assert score()[0].score > 0.9
    for _ in range(60):
        with torch.no_grad():
            for param in model.parameters():
                param.mul_(0.85)
        result, logits = score()
        if float((logits.argmax(-1) == task.labels[train_index]).double().mean()) <= 2.5 / p:
            break
    else:
        pytest.fail("shrinking never brought train accuracy near chance")
    assert result.score < 0.3


def test_stop_on_collapse_stops_at_the_event_and_analyze_reports_it(
    collapsed_run, tmp_path, capsys
):
    run_dir, result = collapsed_run
    out = tmp_path / "stopped"
    args = ["train", "--out", str(out), "-q", "--stop-on-collapse", "--threads", "1"]
    config_file = tmp_path / "collapsing.json"
    config_file.write_text(json.dumps(tiny_config(**COLLAPSING).to_dict()))
    assert main([*args[:1], str(config_file), *args[1:]]) == 0
    said = capsys.readouterr()
    step = result.collapses[0].step
    assert f"collapse at step {step}" in said.err and "(stopped: collapse)" in said.out
    assert load_run(out).steps[-1] == step
    # A resumed run that stopped on a collapse stays stopped.
    assert main(["train", "--resume", "--out", str(out), "-q"]) == 0
    assert load_run(out).steps[-1] == step
    capsys.readouterr()
    assert main(["analyze", str(run_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [e["step"] for e in info["collapses"]] == [step]
    assert info["best"]["step"] == read_best(run_dir)["step"]
    report = (run_dir / "analysis" / "report.html").read_text()
    assert f"collapse\\u003cbr\\u003estep {step}" in report  # the timeline's marker (plotly JSON)
    assert f"collapse at step {step}" in report  # the header


def test_weight_norm_floor_holds_the_norm_and_the_circuit(tmp_path):
    config = tiny_config(**{**COLLAPSING, "train__weight_norm_floor": 1.3})
    run_dir = tmp_path / "floored"
    result = train(config, run_dir, progress=False)
    rows = load_run(run_dir).metrics
    floor_sq = 1.3**2 * rows[0]["sum_sq_weights"]
    # The floor binds once the norm has first risen past it (the initial weights are not
    # rescaled); from then on weight decay never takes it below.
    armed = next(i for i, r in enumerate(rows) if r["sum_sq_weights"] >= floor_sq)
    assert rows[armed]["step"] < 100
    assert all(r["sum_sq_weights"] >= floor_sq * (1 - 1e-6) for r in rows[armed:])
    assert min(r["sum_sq_weights"] for r in rows[armed:]) == pytest.approx(
        floor_sq, rel=1e-5
    )  # it did bind
    assert result.collapses == ()
    assert rows[-1]["train_acc"] > 0.9


@pytest.mark.parametrize("k,n", [(0, 19), (1, 19), (19, 19), (50, 100), (3, 95), (900, 1000)])
def test_wilson_interval_matches_scipy(k, n):
    from scipy.stats import binomtest

    from interp.metrics import format_accuracy, wilson_interval

    low, high = wilson_interval(k / n, n)
    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(reference.low, abs=1e-6) and high == pytest.approx(
        reference.high, abs=1e-6
    )
    text = format_accuracy(k / n, n)
    assert (f"(n={n})" in text) == (n < 1000)


def test_a_collapse_ends_the_stable_phase():
    from circuits.families.modular.family import FAMILY as MODULAR

    rows = [
        {"step": s, "train_acc": tr, "test_acc": te}
        for s, tr, te in [
            (0, 0.0, 0.0),
            (10, 1.0, 0.1),
            (20, 1.0, 0.6),
            (30, 1.0, 1.0),
            (40, 1.0, 1.0),
            (50, 0.5, 0.4),
            (60, 0.4, 0.3),
            (70, 0.3, 0.2),
        ]
    ]
    events = detect_collapses(rows, CollapseRule("train_acc"))
    assert [(e.step, e.first_step) for e in events] == [(70, 50)]
    phases = MODULAR.phases(rows, events)
    assert phases.to_dict()["stable"] == {"start": 30, "end": 50}
    assert MODULAR.phases(rows).to_dict()["stable"] == {"start": 30, "end": None}
    assert MODULAR.phases(rows[:3], events).to_dict()["stable"] == {"start": None, "end": None}
