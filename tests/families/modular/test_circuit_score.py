"""circuit_score and phases: a circuit scores ~1, a lookup table ~0, no signal 0."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.analyses.activations import final_position_activations
from circuits.families.modular.circuit_score import circuit_score
from circuits.families.modular.family import FAMILY as MODULAR
from interp.config import task_config
from interp.tasks import build_task
from tests.conftest import handbuilt_fourier_model


def _train_labels(operation: str, p: int):
    task = build_task(task_config(operation=operation, p=p, train_frac=0.4, split_seed=3))
    return task.labels[task.splits["train"]]


@pytest.mark.parametrize("operation", ["add", "sub", "mul", "div"])
def test_planted_circuit_scores_one_and_lookup_table_scores_low(operation):
    from circuits.families.modular.fourier import answer_group

    p, keys = 59, [3, 17, 22]
    labels = _train_labels(operation, p)
    group = answer_group(operation, p)
    pos_y = group.position[labels].double()[:, None]
    pos_c = group.position[torch.arange(p)].double()[None]
    circuit = sum(torch.cos(2 * math.pi * k * (pos_y - pos_c) / group.m) for k in keys)
    circuit = circuit + 0.1 * torch.randn(len(labels), p, dtype=torch.float64)
    lookup = 5 * torch.nn.functional.one_hot(labels, p).double() + torch.randn(
        len(labels), p, dtype=torch.float64
    )
    scored = circuit_score(circuit, labels, operation, p)
    assert scored.score > 0.95 and scored.key_frequencies == keys
    assert circuit_score(lookup, labels, operation, p).score < 0.1
    mixed = circuit_score(circuit + lookup, labels, operation, p).score
    assert 0.2 < mixed < 0.6


def test_no_signal_scores_zero():
    labels = _train_labels("add", 59)
    assert circuit_score(0.1 * torch.randn(len(labels), 59), labels, "add", 59).score == 0.0


def test_an_empty_answer_fiber_leaves_the_score_undefined_and_read_as_missing():
    """A training set with no example of some answer has no fiber mean there: the score is NaN,
    not 0, and the leads (which the sweep's events read) skip it as missing."""
    p, keys = 59, [3, 17, 22]
    labels = _train_labels("add", p)
    kept = labels != 5  # no training example whose answer is 5
    d = labels.double()[:, None] - torch.arange(p, dtype=torch.float64)[None]
    planted = sum(torch.cos(2 * math.pi * k * d / p) for k in keys)
    assert circuit_score(planted, labels, "add", p).score > 0.9
    undefined = circuit_score(planted[kept], labels[kept], "add", p)
    assert math.isnan(undefined.score) and undefined.key_frequencies == []
    rows = [
        {"step": 0, "train_acc": 0.1, "test_acc": 0.0, "circuit_score": 0.0},
        {"step": 100, "train_acc": 1.0, "test_acc": 0.3, "circuit_score": float("nan")},
        {"step": 200, "train_acc": 1.0, "test_acc": 0.9, "circuit_score": 0.8},
    ]
    assert MODULAR.leads(rows)["circuit_score>=0.5"] == 200
    from circuits.analyses.phases import half_change_step

    assert half_change_step(rows, "circuit_score") == 200  # the NaN is skipped, not a value


def test_frequency_signals_add_up_to_the_total():
    labels = _train_labels("add", 31)
    logits = torch.randn(len(labels), 31, dtype=torch.float64) + 3 * torch.nn.functional.one_hot(
        labels, 31
    )
    result = circuit_score(logits, labels, "add", 31)
    assert float(result.frequency_signal.sum()) == pytest.approx(result.signal, rel=1e-9)


def test_handbuilt_model_scores_near_one():
    p = 31
    model = handbuilt_fourier_model(p, [4, 9, 13])
    task = build_task(task_config(p=p, train_frac=0.3))
    train = task.splits["train"]
    logits = final_position_activations(model, task.tokens[train]).logits
    result = circuit_score(logits, task.labels[train], "add", p)
    assert result.score > 0.99 and result.key_frequencies == [4, 9, 13]


def test_phases_are_computed_from_metrics():
    rows = [
        {"step": 0, "train_acc": 0.1, "test_acc": 0.0},
        {"step": 100, "train_acc": 1.0, "test_acc": 0.05},
        {"step": 200, "train_acc": 1.0, "test_acc": 0.2},
        {"step": 300, "train_acc": 1.0, "test_acc": 0.6},
        {"step": 400, "train_acc": 1.0, "test_acc": 0.995},
    ]
    phases = MODULAR.phases(rows)
    assert [phases.milestone(n) for n in ("memorized", "cleanup_start", "generalized")] == [
        100,
        300,
        400,
    ]
    assert MODULAR.phases(rows[:2]).milestone("cleanup_start") is None
    assert phases.to_dict()["circuit_formation"] == {"start": 100, "end": 300}


def test_a_pattern_that_no_longer_decides_the_answers_scores_low():
    """Fiber means stay Fourier, but per-example noise decides the arg-max: not a circuit in use."""
    p, keys = 59, [3, 17, 22]
    labels = _train_labels("add", p)
    d = labels.double()[:, None] - torch.arange(p, dtype=torch.float64)[None]
    circuit = sum(torch.cos(2 * math.pi * k * d / p) for k in keys)
    noisy = circuit + 4 * torch.randn(len(labels), p, dtype=torch.float64)
    result = circuit_score(noisy, labels, "add", p)
    accuracy = float((noisy.argmax(-1) == labels).double().mean())
    assert result.concentration > 0.8  # the averages alone still look like a circuit
    assert accuracy < 0.3 and result.decided == pytest.approx(accuracy)
    assert result.score == pytest.approx(result.concentration * accuracy) and result.score < 0.3
