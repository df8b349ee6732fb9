"""The cost of `interp analyze --circuits` and `--llc` beside the default analysis, each a
fresh `interp analyze` process (imports included), on one run measured side by side:

    python -m experiments.benchmarks.circuits_cost runs/demo

Targets (issue 14): `--circuits` on every checkpoint of `demo` (76) within 20 s on 2 cores,
`--llc` within 5 minutes. Each part runs alone (`--circuits` = circuit discovery plus the
base accuracy columns), so the times add up to what `--circuits --llc` costs on top of the
default analysis.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"default parts": None, "--circuits": 20.0, "--llc": 300.0}


def timed(run_dir: Path, flags: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run_dir.name
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("analysis"))
        start = time.perf_counter()
        subprocess.run(["interp", "analyze", str(copy), "-q", *flags], check=True)
        return time.perf_counter() - start


def main(argv: list[str]) -> None:
    run_dir = Path(argv[0] if argv else "runs/demo")
    n = len(list((run_dir / "checkpoints").glob("step_*.safetensors")))
    print(f"{run_dir}: {n} checkpoints")
    print(f"{'analysis':<16}{'seconds':>10}{'target':>10}")
    for name, target in TARGETS.items():
        flags = [] if name == "default parts" else [name]
        seconds = timed(run_dir, flags)
        verdict = "" if target is None else ("  met" if seconds <= target else "  MISSED")
        print(f"{name:<16}{seconds:>10.1f}{'' if target is None else target:>10}{verdict}")


if __name__ == "__main__":
    main(sys.argv[1:])
