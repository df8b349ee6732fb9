"""The README's two commands are the ones CI and newcomers run: keep them true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    test_command = _readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text()


def test_first_command_installs_cpu_torch_then_trains_and_analyzes_the_demo():
    first = _readme_commands()[0]
    assert first.index("torch==2.13.0") < first.index("pip install -e .")
    assert "interp train demo" in first and "interp analyze" in first


def test_ci_lints_with_ruff_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "ruff check ." in ci and ci.index("ruff check .") < ci.index(_readme_commands()[1])
    assert "[tool.ruff" in (ROOT / "pyproject.toml").read_text()
