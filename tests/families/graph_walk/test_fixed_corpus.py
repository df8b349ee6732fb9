"""A fixed corpus of graph walks as a first-class study (issue 23): the corpus, validation walks
held out of it, test walks never selected on, and the `best` pointer on validation loss."""

from __future__ import annotations

import json

import torch

import interp
from interp.collapse import best_checkpoint
from interp.presets import resolve_config
from interp.registry import family_of
from interp.tasks import build_task
from tests.sweep_helpers import WALK_SET

TINY = WALK_SET


def rows_of(tensor: torch.Tensor) -> set[tuple[int, ...]]:
    return {tuple(row) for row in tensor.tolist()}


def test_validation_walks_are_held_out_of_the_corpus_and_apart_from_the_test_walks():
    config = resolve_config("graph-walk", TINY)
    task = build_task(config.task)
    assert list(task.splits) == ["train", "test", "val"]
    assert [len(task.splits[s]) for s in ("train", "test", "val")] == [64, 32, 32]
    train, test, val = (rows_of(task.split(s)[0]) for s in ("train", "test", "val"))
    assert not (val & train) and not (val & test) and not (train & test)
    assert task.held_out_splits == ("test",)  # val selects, it is never reported as held out
    # The test walks and the corpus are those of before (their seeds did not move), and fresh
    # mode has no validation split (its `train` split is held-out walks already).
    fresh = build_task(resolve_config("graph-walk", [*TINY, "task.data=fresh"]).task)
    assert list(fresh.splits) == ["train", "test"]
    assert torch.equal(fresh.split("test")[0], task.split("test")[0])
    # The trainer's batches come from the corpus only: 4 steps of 16 walks are one epoch.
    sampler = family_of(config).sampler(task, config.train, torch.device("cpu"))
    seen = set()
    for _ in range(4):
        seen |= rows_of(sampler.next_batch()[0])
    assert seen == train


def test_a_fixed_corpus_run_measures_validation_and_points_best_at_its_lowest_val_loss(tmp_path):
    config = resolve_config("graph-walk", [*TINY, "train.steps=80", "train.ckpt_every=10"])
    interp.train(config, tmp_path / "run", progress=False)
    run = interp.load_run(tmp_path / "run")
    metrics = run.metrics
    assert {"val_loss", "val_excess_loss", "val_excess_loss_se", "excess_loss"} <= set(metrics[-1])
    # The paired excess on the validation walks is their loss minus the walks' own log-loss:
    # a model's ranking on val_loss and on val_excess_loss is the same.
    shift = {round(r["val_loss"] - r["val_excess_loss"], 9) for r in metrics}
    assert len(shift) == 1
    best = json.loads((tmp_path / "run" / "manifest.json").read_text())["best"]
    lowest = min(metrics, key=lambda r: (r["val_loss"], r["step"]))
    assert best == {"step": lowest["step"], "criterion": "val_loss", "value": lowest["val_loss"]}


def test_the_best_pointer_reads_validation_never_test():
    rows = [
        {"step": 0, "val_loss": 2.0, "val_acc": 0.1, "test_loss": 1.0, "train_loss": 2.0},
        {"step": 10, "val_loss": 1.5, "val_acc": 0.1, "test_loss": 1.9, "train_loss": 1.0},
        {"step": 20, "val_loss": 1.7, "val_acc": 0.2, "test_loss": 0.5, "train_loss": 0.5},
    ]
    assert best_checkpoint(rows, ("train",), True, "val_loss").step == 10
    assert best_checkpoint(rows, ("train",), True).step == 20  # the default: highest val_acc
    assert best_checkpoint(rows, ("train",), False).step == 20  # no validation: train loss


def test_a_sweep_of_fixed_corpora_selects_its_rate_on_validation_not_on_the_corpus():
    import pandas as pd

    from interp.sweep.study import Sweep

    sweep = Sweep.__new__(Sweep)
    sweep.table = pd.DataFrame(
        {
            "status": "done",
            "x": [1, 1],
            "train.lr": [0.1, 0.3],
            "final_train_loss": [2.0, 1.5],  # the corpus: the faster rate memorizes it
            "final_val_loss": [2.4, 2.6],  # held-out walks: the slower rate generalizes
        }
    )
    assert sweep.selection_column == "final_val_loss"
    assert list(sweep.selected("x", "train.lr")["train.lr"]) == [0.1]
    assert list(sweep.selected("x", "train.lr", on="final_train_loss")["train.lr"]) == [0.3]
