"""Usage errors (issue 25): an unknown option or command, a missing argument, a bad value or
choice is click's "Usage: ..." and "Error: ..." lines and exit code 2 on every sub-command,
never a traceback; through `main` and through the installed `interp` console script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from interp.cli import main
from interp.typer_compat import click_exception

#: (argv, text the error must contain). Parsing fails before a command runs, so no run
#: folder is needed: "RUN" need not exist.
USAGE_ERRORS = {
    "train: unknown option": (["train", "demo", "--out", "R", "--steps", "5"], "--steps"),
    "analyze: unknown option": (["analyze", "RUN", "--bogus"], "--bogus"),
    "sweep run: unknown option": (["sweep", "run", "--bogus"], "--bogus"),
    "sweep analyze: unknown option": (["sweep", "analyze", "S", "--bogus"], "--bogus"),
    "import: unknown option": (["import", "SRC", "--bogus"], "--bogus"),
    "presets: unknown option": (["presets", "--bogus"], "--bogus"),
    "relist: unknown option": (["relist", "RUN", "--bogus"], "--bogus"),
    "unknown command": (["nosuchcommand"], "nosuchcommand"),
    "unknown sweep command": (["sweep", "nosuch"], "nosuch"),
    "analyze: missing argument": (["analyze"], "Missing argument"),
    "relist: missing argument": (["relist"], "Missing argument"),
    "import: missing argument": (["import"], "Missing argument"),
    "sweep analyze: missing argument": (["sweep", "analyze"], "Missing argument"),
    "train: bad int": (["train", "demo", "--threads", "abc"], "--threads"),
    "analyze: bad int": (["analyze", "RUN", "--threads", "x"], "--threads"),
    "sweep run: bad int": (["sweep", "run", "--workers", "many"], "--workers"),
    "sweep run: bad float": (["sweep", "run", "--cpus", "lots"], "--cpus"),
    "sweep run: bad choice": (["sweep", "run", "S", "--backend", "slurm"], "--backend"),
    "train: bad --log choice": (["train", "demo", "--out", "R", "--log", "comet"], "--log"),
    "analyze: bad --log choice": (["analyze", "RUN", "--log", "tb"], "--log"),
    "sweep run: bad --log choice": (["sweep", "run", "S", "--log", "neptune"], "--log"),
    "train: option without its value": (["train", "demo", "--out"], "--out"),
}
#: click prints no "Usage:" line for these (the parser has no command context yet).
ERROR_LINE_ONLY = {"train: option without its value"}


def test_the_caught_class_is_the_one_typer_raises():
    """typer.BadParameter is a usage error of the installed typer: it must be caught."""
    assert issubclass(typer.BadParameter, click_exception())


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=list(USAGE_ERRORS))
def test_usage_error_through_main(case, capsys):
    argv, needle = USAGE_ERRORS[case]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert "Error:" in err, err
    assert case in ERROR_LINE_ONLY or "Usage:" in err, err
    assert needle in err


def test_bare_group_shows_help(capsys):
    # click >= 8.2 exits 2 here (help shown as a usage error), click 8.1 exits 0
    assert main(["sweep"]) in (0, 2)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert "run" in out + err and "analyze" in out + err


def test_help_still_exits_0(capsys):
    assert main(["train", "--help"]) == 0
    assert "--out" in capsys.readouterr().out


def _console_script() -> Path:
    script = Path(sys.executable).with_name("interp")
    if not script.exists():
        pytest.skip(f"no console script at {script} (package not installed with pip)")
    return script


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "demo", "--out", "R", "--steps", "5"],
        ["analyze", "RUN", "--bogus"],
        ["nosuchcommand"],
        ["sweep", "run", "S", "--backend", "slurm"],
    ],
    ids=["train-option", "analyze-option", "command", "sweep-choice"],
)
def test_usage_error_through_console_script(argv, tmp_path):
    proc = subprocess.run(
        [str(_console_script()), *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "Usage:" in proc.stderr and "Error:" in proc.stderr, proc.stderr
    assert not any(tmp_path.iterdir()), "a usage error wrote files"
