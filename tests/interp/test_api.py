"""The Python API notebooks use: `interp.train` in one call, and errors in the API's words."""

from __future__ import annotations

import json

import pytest

import interp
from interp.errors import RunExists, TrainingError, cli_message

TINY = [
    "task.p=11",
    "train.steps=20",
    "train.ckpt_every=10",
    "train.ckpt_log_until=0",
    "model.d_model=16",
    "model.d_mlp=32",
    "model.n_heads=2",
    "model.d_head=8",
]


def test_train_in_one_call_logs_the_family_progress_measure(tmp_path):
    result = interp.train("demo", tmp_path / "run", overrides=TINY, progress=False)
    assert result.final_step == 20
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in rows][-1] == 20 and all("circuit_score" in r for r in rows)
    run = interp.load_run(tmp_path / "run")
    assert run.config.task.p == 11 and not hasattr(run.config.task, "n_entities")
    # Resuming a finished run keeps it as it is.
    assert interp.train(None, tmp_path / "run", resume=True, progress=False).final_step == 20


def test_errors_speak_the_api_and_the_cli_maps_them_to_flags(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("not a run")
    with pytest.raises(RunExists) as caught:
        interp.train("demo", tmp_path / "full", overrides=TINY, progress=False)
    message = str(caught.value)
    assert "overwrite=True" in message and "resume=True" in message and "--" not in message
    assert caught.value.path == tmp_path / "full"
    assert cli_message(caught.value) == (
        f"--out {tmp_path / 'full'}: folder is not empty; continue the run in it "
        "with --resume or replace it with --overwrite"
    )
    with pytest.raises(TrainingError, match=r"^resume=True: .*config.json: missing"):
        interp.train(None, tmp_path / "full", resume=True, progress=False)
