"""Bad input through the CLI's `main` (issue 6): one line naming the field or flag, exit code 2,
nothing written. Also `--resume`, `interp import` and `interp analyze` on a damaged run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.cli import main
from interp.runs import checkpoint_name, load_run
from tests.reliability_helpers import assert_bit_identical, final_weights, resume_config
from tests.sweep_helpers import TINY_MODEL, set_flags

TINY = set_flags(*TINY_MODEL, "train.steps=20", "train.ckpt_every=10", "train.ckpt_log_until=0")


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in root.rglob("*")
    }


#: (argv, text the single error line must contain). "OUT" is replaced by a fresh path,
#: "FULL" by a folder holding an unrelated file, "CFG_*" by config files written below.
BAD_INPUTS = {
    "unknown preset": (
        ["train", "mod-addd", "--out", "OUT"],
        "PRESET_OR_CONFIG: unknown preset 'mod-addd'; presets: ",
    ),
    "unknown field": (
        ["train", "demo", "--out", "OUT", "--set", "model.d_modle=3"],
        "model.d_modle: unknown field; allowed in model:",
    ),
    "unknown bare field": (
        ["train", "demo", "--out", "OUT", "--set", "lrr=3"],
        "lrr: unknown field",
    ),
    "unknown section": (
        ["train", "demo", "--out", "OUT", "--set", "optim.lr=3"],
        "optim.lr: unknown section 'optim'",
    ),
    "no = in --set": (
        ["train", "demo", "--out", "OUT", "--set", "train.lr"],
        "--set 'train.lr': expected key=value",
    ),
    "wrong type int": (
        ["train", "demo", "--out", "OUT", "--set", "train.steps=many"],
        "train.steps: expected an integer, got 'many'",
    ),
    "wrong type float": (
        ["train", "demo", "--out", "OUT", "--set", "train.lr=fast"],
        "train.lr: expected a number, got 'fast'",
    ),
    "wrong type bool": (
        ["train", "demo", "--out", "OUT", "--set", "model.tied_embeddings=maybe"],
        "model.tied_embeddings: expected true or false, got 'maybe'",
    ),
    "not allowed value": (
        ["train", "demo", "--out", "OUT", "--set", "model.act_fn=tanh"],
        "model.act_fn: got 'tanh'; allowed: relu, gelu, gelu_new, silu",
    ),
    "p not prime for div": (
        ["train", "demo", "--out", "OUT", "--set", "task.operation=div", "--set", "task.p=12"],
        "task.p: operation 'div' needs a prime modulus (it divides by y), got 12",
    ),
    "p too small": (
        ["train", "demo", "--out", "OUT", "--set", "task.p=2"],
        "task.p: must be an integer >= 3, got 2",
    ),
    "train_frac 1.5": (
        ["train", "demo", "--out", "OUT", "--set", "task.train_frac=1.5"],
        "task.train_frac: must be in the open interval (0, 1), got 1.5",
    ),
    "train_frac 0": (
        ["train", "demo", "--out", "OUT", "--set", "task.train_frac=0"],
        "task.train_frac: must be in the open interval (0, 1), got 0.0",
    ),
    "train_frac empties a split": (
        ["train", "demo", "--out", "OUT", *TINY, "--set", "task.train_frac=0.001"],
        "task.train_frac: 0.001 leaves 0 of 121 examples for training",
    ),
    "negative lr": (
        ["train", "demo", "--out", "OUT", "--set", "train.lr=-1"],
        "train.lr: must be > 0, got -1.0",
    ),
    "infinite lr": (
        ["train", "demo", "--out", "OUT", "--set", "train.lr=inf"],
        "train.lr: expected a finite number",
    ),
    "zero steps": (
        ["train", "demo", "--out", "OUT", "--set", "train.steps=0"],
        "train.steps: must be >= 1, got 0",
    ),
    "missing --out": (["train", "demo"], "--out: required"),
    "non-empty --out": (
        ["train", "demo", "--out", "FULL", *TINY],
        "--out FULL: folder is not empty; continue the run in it with --resume or replace it with "
        "--overwrite",
    ),
    "--overwrite a non-run": (
        ["train", "demo", "--out", "FULL", "--overwrite", *TINY],
        "--overwrite only replaces a run folder, and this one has no config.json",
    ),
    "--resume with a preset": (
        ["train", "demo", "--resume", "--out", "FULL"],
        "--resume: continues the run's own config",
    ),
    "--resume a non-run": (["train", "--resume", "--out", "FULL"], "config.json: missing"),
    "missing config file": (
        ["train", "CFG_MISSING.toml", "--out", "OUT"],
        "CFG_MISSING.toml: no such config file",
    ),
    "config file bad syntax": (
        ["train", "CFG_BAD.json", "--out", "OUT"],
        "CFG_BAD.json: cannot parse",
    ),
    "config file unknown field": (
        ["train", "CFG_FIELD.toml", "--out", "OUT"],
        "CFG_FIELD.toml: task.modulus: unknown field",
    ),
    "import without --task": (["import", "FULL", "--out", "OUT"], "--task: required"),
    "import bad source": (
        ["import", "FULL", "--out", "OUT", "--task", "CFG_TASK.json"],
        "no TL config (config.json or cfg.json",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_prints_one_line_naming_the_field_exits_2_and_writes_nothing(
    tmp_path, capsys, case
):
    argv, expected = BAD_INPUTS[case]
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "notes.txt").write_text("not a run")
    (tmp_path / "CFG_BAD.json").write_text('{"task": {"p": 11,}}')
    (tmp_path / "CFG_FIELD.toml").write_text("[task]\nmodulus = 11\n")
    (tmp_path / "CFG_TASK.json").write_text(
        json.dumps({"operation": "add", "p": 11, "split_seed": 0, "train_frac": 0.5})
    )
    names = {"OUT", "FULL", "CFG_MISSING.toml", "CFG_BAD.json", "CFG_FIELD.toml", "CFG_TASK.json"}
    argv = [str(tmp_path / a) if a in names else a for a in argv]
    before = _files(tmp_path)

    code = main(argv)

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured
    assert len(lines) == 1, lines
    expected = expected.replace("FULL", str(tmp_path / "FULL"))
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _files(tmp_path) == before  # nothing written, nothing removed


def test_resume_through_the_cli_matches_an_uninterrupted_run(tmp_path, capsys, monkeypatch):
    import interp.training as training

    config = [
        "train",
        "demo",
        "-q",
        *TINY,
        "--set",
        "train.batch_size=16",
        "--set",
        "train.grad_filter=ema",
    ]
    assert main([*config, "--out", str(tmp_path / "straight")]) == 0

    original = training.Trainer.train_step

    def dies_at_step_15(self):
        if self.step == 15:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(training.Trainer, "train_step", dies_at_step_15)
    assert main([*config, "--out", str(tmp_path / "killed")]) == 130  # Ctrl-C
    monkeypatch.setattr(training.Trainer, "train_step", original)
    assert load_run(tmp_path / "killed").steps == [0, 10]

    assert main(["train", "--resume", "--out", str(tmp_path / "killed"), "-q"]) == 0
    assert "trained 20 steps" in capsys.readouterr().out
    assert_bit_identical(final_weights(tmp_path / "straight"), final_weights(tmp_path / "killed"))


def test_analyze_reports_a_damaged_checkpoint_by_name_and_exits_nonzero(tmp_path, capsys):
    from interp.training import train

    run_dir = tmp_path / "run"
    train(resume_config(train__steps=20), run_dir, progress=False)
    damaged = run_dir / checkpoint_name(10)
    damaged.write_bytes(damaged.read_bytes()[:50])

    code = main(["analyze", str(run_dir), "--no-figures", "--json"])

    captured = capsys.readouterr()
    assert code == 1
    assert "step_000000010.safetensors" in captured.err and "sha256" in captured.err
    info = json.loads(captured.out)
    assert info["n_checkpoints"] == 2


def test_import_through_the_cli(tmp_path, capsys):
    from tests.interp.test_import import tl_config, write_source

    write_source(tmp_path / "src", tl_config(7), [0, 50], fmt="safetensors")
    (tmp_path / "task.json").write_text(
        json.dumps({"operation": "add", "p": 7, "split_seed": 0, "train_frac": 0.5})
    )
    assert (
        main(
            [
                "import",
                str(tmp_path / "src"),
                "--out",
                str(tmp_path / "run"),
                "--task",
                str(tmp_path / "task.json"),
            ]
        )
        == 0
    )
    assert "imported 2 checkpoints (steps 0–50)" in capsys.readouterr().out
    assert main(["analyze", str(tmp_path / "run"), "--no-figures", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_checkpoints"] == 2
