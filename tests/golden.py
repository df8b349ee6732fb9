"""Golden records of `interp analyze` on the committed run fixtures, and how to compare them.

The run folders in tests/fixtures/runs/ were written by `interp train` at commit b652dfb
(tests/fixtures/runs/README.md). `analyze_fixture(name, work_dir)` copies one to
`work_dir` (the fixture itself is never written), analyzes the copy through the CLI's
`main` with every analysis part that applies to its task kind (the default of `interp
analyze`), and returns a JSON-able record: the summary's result fields plus
`analysis/table.csv` as a list of row dicts (the CSV's strings, as written).
tests/fixtures/golden/<name>.json holds the record of the code as it was when recorded;
`compare(name, recorded, new)` lists every difference, each naming the fixture, the
field or column, the step and both values. tests/e2e/test_golden.py asserts there are none.

    python -m tests.golden record [NAME ...]

rewrites the golden files (all fixtures by default). Do this only for a deliberate change
of analysis behaviour that you can explain, and say in the commit message which numbers
moved and why: the point of these files is that a refactor leaves them untouched.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
RUNS = FIXTURES / "runs"
GOLDEN = FIXTURES / "golden"
NAMES = ("modular_demo", "two_hop_tiny", "comparison_tiny")

#: Summary fields that are results (not paths or timings), compared value by value.
SUMMARY_FIELDS = (
    "kind",
    "parts",
    "n_checkpoints",
    "steps",
    "key_frequencies",
    "phases",
    "leads",
    "final",
    "final_splits",
    "final_intervals",
    "split_sizes",
    "collapses",
    "best",
)
#: Compared exactly: which frequencies and which steps, not measurements.
EXACT_FIELDS = ("kind", "parts", "n_checkpoints", "steps", "key_frequencies", "phases", "leads")

# Tolerances for measured numbers, relative plus absolute (|new - old| <= ATOL + RTOL * |old|).
# Analyzing the same checkpoints with the same code gives bit-identical results, but a
# refactor may reorder float operations (another summation order, float32 vs float64 at a
# different point), which moves float32 activations by ~1e-7 relative and the float64
# losses and scores derived from them by about as much. RTOL = 1e-4 leaves three orders of
# magnitude of room for that while any real change of an analysis moves numbers by far
# more; the table's values are written with 6 significant digits (5e-6 relative), well
# inside it. ATOL covers values that are ~0 (the step-0 attributions, ~1e-8, and the
# losses of a model that fits perfectly, ~1e-7), where a relative bound is meaningless.
# Accuracies are counts / n: a prediction that flips on a near-tie moves one by 1/n, which
# this tolerance reports; that is intended (look at the logits before loosening it).
RTOL = 1e-4
ATOL = 1e-6


def analyze_fixture(name: str, work_dir: Path) -> dict[str, Any]:
    """Analyze a copy of fixture run `name` in `work_dir` through the CLI; returns its record."""
    return analyze_fixture_from(RUNS / name, work_dir)


def analyze_fixture_from(source: Path, work_dir: Path) -> dict[str, Any]:
    """`analyze_fixture` on a copy of the run folder `source` (e.g. a fixture edited in a test)."""
    from interp.cli import main

    name = Path(source).name
    run_dir = Path(work_dir) / name
    shutil.copytree(source, run_dir)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(
            ["analyze", str(run_dir), "--no-figures", "--json", "--threads", "1", "--quiet"]
        )
    if (
        code != 0
    ):  # 1: a checkpoint was skipped; 2: bad input. Either way the record would be wrong.
        raise RuntimeError(f"{name}: `interp analyze` exited {code}:\n{stdout.getvalue()}")
    info = json.loads(stdout.getvalue())
    record: dict[str, Any] = {key: info[key] for key in SUMMARY_FIELDS if key in info}
    with open(run_dir / "analysis" / "table.csv", newline="", encoding="utf-8") as handle:
        record["table"] = list(csv.DictReader(handle))
    return record


def golden_path(name: str) -> Path:
    return GOLDEN / f"{name}.json"


def load_golden(name: str) -> dict[str, Any]:
    return json.loads(golden_path(name).read_text(encoding="utf-8"))


def close(old: Any, new: Any) -> bool:
    """Numbers within ATOL + RTOL * |old|; NaN only equals NaN."""
    old, new = float(old), float(new)
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    if math.isinf(old) or math.isinf(new):
        return old == new
    return abs(new - old) <= ATOL + RTOL * abs(old)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_float(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def compare_values(where: str, old: Any, new: Any) -> list[str]:
    """Differences between two JSON values: floats within tolerance, everything else equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        problems = [
            f"{where}.{key}: recorded {old[key]!r}, now missing" for key in old if key not in new
        ]
        problems += [
            f"{where}.{key}: not recorded, now {new[key]!r}" for key in new if key not in old
        ]
        for key in old:
            if key in new:
                problems += compare_values(f"{where}.{key}", old[key], new[key])
        return problems
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: recorded {old!r}, now {new!r}"]
        return [
            p
            for i, (a, b) in enumerate(zip(old, new))
            for p in compare_values(f"{where}[{i}]", a, b)
        ]
    if _is_number(old) and _is_number(new) and (isinstance(old, float) or isinstance(new, float)):
        return [] if close(old, new) else [f"{where}: recorded {old!r}, now {new!r}"]
    return (
        [] if old == new and type(old) is type(new) else [f"{where}: recorded {old!r}, now {new!r}"]
    )


def compare_summary(
    name: str, recorded: dict[str, Any], new: dict[str, Any], fields: tuple[str, ...]
) -> list[str]:
    """Differences in the summary fields `fields` (those of them that were recorded)."""
    problems = []
    for key in fields:
        if key not in recorded:
            continue
        if key not in new:
            problems.append(
                f"{name}: summary field {key!r}: recorded {recorded[key]!r}, now missing"
            )
        elif key in EXACT_FIELDS:
            if recorded[key] != new[key]:
                problems.append(
                    f"{name}: summary field {key!r}: recorded {recorded[key]!r}, now {new[key]!r}"
                )
        else:
            problems += compare_values(f"{name}: summary {key}", recorded[key], new[key])
    return problems


def compare_table(
    name: str, recorded: list[dict[str, str]], new: list[dict[str, str]]
) -> list[str]:
    """Differences between two analysis tables, matched by step.

    Every recorded column must be present; a cell that parses as a number in both tables is
    compared within tolerance, any other cell (e.g. key frequencies "15 19 21") exactly.
    New columns are allowed, and are listed when there is any difference.
    """
    problems: list[str] = []
    old_steps = [row["step"] for row in recorded]
    new_steps = [row.get("step") for row in new]
    if old_steps != new_steps:
        problems.append(f"{name}: table steps: recorded {old_steps}, now {new_steps}")
    old_columns = list(recorded[0]) if recorded else []
    new_columns = list(new[0]) if new else []
    missing = [c for c in old_columns if c not in new_columns]
    if missing:
        problems.append(f"{name}: table columns missing now: {missing}")
    by_step = {row.get("step"): row for row in new}
    for old_row in recorded:
        step = old_row["step"]
        new_row = by_step.get(step)
        if new_row is None:
            continue
        for column in old_columns:
            if column in missing:
                continue
            old, new_value = old_row[column], new_row[column]
            a, b = _parse_float(old), _parse_float(new_value)
            same = close(a, b) if a is not None and b is not None else old == new_value
            if not same:
                problems.append(
                    f"{name}: column {column!r} at step {step}: recorded {old!r}, now {new_value!r}"
                )
    extra = [c for c in new_columns if c not in old_columns]
    if problems and extra:
        problems.append(f"{name}: (new columns, not compared: {extra})")
    return problems


def compare(name: str, recorded: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every difference between a recorded golden record and a new one."""
    return compare_summary(name, recorded, new, SUMMARY_FIELDS) + compare_table(
        name, recorded["table"], new["table"]
    )


def record(names: list[str]) -> None:
    """Rewrite tests/fixtures/golden/<name>.json from the current code's analysis."""
    import tempfile

    import torch

    torch.set_num_threads(1)  # as under pytest (tests/conftest.py) and `--threads 1`
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names:
        with tempfile.TemporaryDirectory() as work_dir:
            result = analyze_fixture(name, Path(work_dir))
        golden_path(name).write_text(
            json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        print(f"recorded {golden_path(name)} ({len(result['table'])} checkpoints)")


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "record" or any(name not in NAMES for name in argv[1:]):
        print(
            f"usage: python -m tests.golden record [{' '.join(NAMES)}]\n"
            "Rewrites the golden records: only for a deliberate, explained change of analysis "
            "behaviour.",
            file=sys.stderr,
        )
        return 2
    record(list(argv[1:]) or list(NAMES))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
