"""Checkpoint retention (`train.keep_checkpoints`): what each policy keeps, on a planted
metrics table and on real runs, and that pruning never loses the last, the best or a pinned
checkpoint, nor a metrics row."""

from __future__ import annotations

import json

import pytest

import interp
from interp import retention, runs
from interp.cli import main
from interp.schedule import checkpoint_schedule
from tests.conftest import tiny_config


def planted_rows():
    """Checkpoints every 10 steps to 1000: train fits at 100, test passes 50 % at 500 and 99 %
    at 600, then falls back below 50 % at 900 (a collapse the trainer recorded there)."""
    rows = []
    for step in range(0, 1001, 10):
        train = 1.0 if step >= 100 else 0.2
        test = 0.1 if step < 500 else 0.7 if step < 600 else 1.0
        if step >= 900:
            test = 0.3
        rows.append({"step": step, "train_acc": train, "test_acc": test})
    rows[90]["events"] = [{"kind": "collapse", "first_step": 900, "step": 900}]
    return rows


def test_events_policy_keeps_log_spaced_checkpoints_and_both_sides_of_every_event():
    rows = planted_rows()
    steps = [r["step"] for r in rows]
    kept = retention.kept_steps(steps, rows, "events", protected={420})
    for event in (100, 500, 600, 900):
        assert {event - 10, event} <= kept, event
    assert {0, 10, 1000, 420} <= kept  # first, log-spaced from the first, last, protected
    assert len(kept) <= retention.LOG_SPACED + 1 + 2 * 4 + 2
    assert retention.kept_steps(steps, rows, "final") == {1000}
    assert retention.kept_steps(steps, rows, "final", protected={420}) == {420, 1000}
    assert retention.kept_steps(steps, rows, "all") == set(steps)
    with pytest.raises(ValueError, match="retention policy"):
        retention.kept_steps(steps, rows, "some")


def test_a_run_with_the_events_policy_is_pruned_at_its_end_and_still_analyzes(tmp_path, capsys):
    config = tiny_config(train__steps=200, train__ckpt_every=10, train__keep_checkpoints="events")
    out = tmp_path / "run"
    interp.train(config, out, progress=False)
    run = interp.load_run(out)
    manifest = json.loads((out / runs.MANIFEST_FILE).read_text())
    assert manifest["retention"]["policy"] == "events"
    assert len(run.steps) + manifest["retention"]["pruned"] == len(run.metrics)
    assert run.steps[-1] == 200 and runs.read_best(out)["step"] in run.steps
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        runs.checkpoint_name(s).split("/")[-1] for s in run.steps
    ]
    train = config.train
    every = checkpoint_schedule(train.steps, train.ckpt_every, train.ckpt_log_until)
    assert [r["step"] for r in run.metrics] == list(every)  # every evaluation stays
    assert main(["analyze", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_checkpoints"] == len(run.steps) and summary["skipped"] == []


def test_a_checkpoint_another_run_starts_from_is_never_pruned(tmp_path):
    source = tmp_path / "source"
    interp.train(tiny_config(train__steps=60), source, progress=False)
    interp.train(
        tiny_config(train__steps=20, train__init_from=f"{source}@20"),
        tmp_path / "b",
        progress=False,
    )
    assert retention.pinned_steps(source) == {20}
    pruned = retention.prune(source, "final")
    assert set(pruned.kept) >= {20, 60} and 40 in pruned.removed and pruned.bytes_freed > 0
    assert interp.load_run(source).steps == sorted(pruned.kept)
    # Pruning again changes nothing; the record counts what was pruned in all.
    again = retention.prune(source, "final")
    assert again.removed == () and again.kept == pruned.kept
