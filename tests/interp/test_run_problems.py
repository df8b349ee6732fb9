"""Run folders a new user can end up with: a checkpoint whose weights hold NaN (file intact,
hash valid) and a run whose manifest.json was lost. Both must be reported, never analyzed
silently, and the lost manifest must be recoverable."""

from __future__ import annotations

import json
import shutil

import torch

from interp import runs
from interp.cli import main
from interp.runs import load_run


def _copy(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("analysis"))
    return run_dir


def test_a_checkpoint_with_nan_weights_is_reported_by_step_and_exits_1(tiny_run, tmp_path, capsys):
    run_dir = _copy(tiny_run, tmp_path)
    run = load_run(run_dir)
    step = run.steps[2]
    weights = run.weights_at(step)
    name = sorted(weights)[0]
    weights[name] = weights[name].clone()
    weights[name].view(-1)[0] = float("nan")
    # Rewrite the file and its manifest hash: intact, valid, and still wrong.
    digest = runs.save_tensors(
        run_dir / runs.checkpoint_name(step), weights, metadata={"step": str(step)}
    )
    manifest = json.loads((run_dir / runs.MANIFEST_FILE).read_text())
    for entry in manifest["checkpoints"]:
        if entry["step"] == step:
            entry["sha256"] = digest
    (run_dir / runs.MANIFEST_FILE).write_text(json.dumps(manifest))

    assert main(["analyze", str(run_dir), "--json"]) == 1
    said = capsys.readouterr()
    info = json.loads(said.out)
    assert [s["step"] for s in info["skipped"]] == [step]
    assert "NaN or inf" in info["skipped"][0]["reason"] and name in info["skipped"][0]["reason"]
    assert f"skipped step {step}" in said.err
    table = (run_dir / "analysis" / "table.csv").read_text().splitlines()
    assert len(table) - 1 == len(run.steps) - 1  # every other checkpoint analyzed, not this one
    report = (run_dir / "analysis" / "report.html").read_text()
    assert "skipped checkpoint" in report and f"step {step}" in report


def test_a_lost_manifest_is_explained_and_relist_recovers_the_loadable_checkpoints(
    tiny_run, tmp_path, capsys
):
    run_dir = _copy(tiny_run, tmp_path)
    steps = load_run(run_dir).steps
    (run_dir / runs.MANIFEST_FILE).unlink()
    # One file is damaged as well: relist must leave it out.
    damaged = run_dir / runs.checkpoint_name(steps[1])
    damaged.write_bytes(damaged.read_bytes()[:100])

    assert main(["analyze", str(run_dir), "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json is missing" in err and f"{len(steps)} checkpoint files" in err
    assert f"interp relist {run_dir}" in err

    assert main(["relist", str(run_dir)]) == 1  # 1: a file was left out
    said = capsys.readouterr()
    assert f"listed {len(steps) - 1} checkpoints" in said.out and f"step {steps[1]}" in said.err
    relisted = load_run(run_dir)
    assert relisted.steps == [s for s in steps if s != steps[1]]
    assert runs.read_best(run_dir) is not None  # the best pointer comes back from metrics.jsonl
    original = load_run(tiny_run).weights_at(steps[-1])
    assert all(
        torch.equal(tensor, original[name])
        for name, tensor in relisted.weights_at(steps[-1]).items()
    )
    assert main(["analyze", str(run_dir), "--no-figures"]) == 0
    # Relisting a folder that has its manifest is refused rather than overwriting it.
    assert main(["relist", str(run_dir)]) == 2


def test_every_training_process_records_its_provenance(tmp_path):
    """Versions, commit, CPU, device, threads and seeds: what a cross-machine comparison needs."""
    from interp import provenance
    from interp.training import resume, train
    from tests.conftest import tiny_config

    config = tiny_config(train__steps=40)
    train(config, tmp_path / "run", progress=False)
    (first,) = provenance.read(tmp_path / "run")
    assert first["started_at_step"] == 0 and first["torch"] == torch.__version__
    assert first["seeds"] == {
        "model": config.model.seed,
        "train": config.train.seed,
        "split": config.task.split_seed,
    }
    assert first["device"] == "cpu" and first["torch_threads"] == torch.get_num_threads()
    assert first["transformer_lens"].startswith("4.") and first["cpu"]
    assert first["git_commit"] is None or len(first["git_commit"]) == 40
    # A resumed run appends a session starting where it continued.
    raw = json.loads((tmp_path / "run" / "config.json").read_text())
    raw["train"]["steps"] = 60
    (tmp_path / "run" / "config.json").write_text(json.dumps(raw))
    resume(tmp_path / "run", progress=False)
    sessions = provenance.read(tmp_path / "run")
    assert [s["started_at_step"] for s in sessions] == [0, 40]
