"""Folders written before each task family became one package keep loading and analyzing.

Their `config.json` records the module that defined the family then (`family_module`:
`circuits.families.two_hop`, `circuits.families.modular`, …); the registry maps those paths
to today's (`interp.registry.MOVED_MODULES`). The sweep fixtures under
`tests/fixtures/sweeps/*_before_packages` were written by `interp sweep run` and
`interp sweep analyze` at commit 2a218c9 (the last before the move; checkpoints left out:
the sweep table reads only the runs' configs and metrics), with their `sweep.csv` as that
version wrote it.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from interp.config import RunConfig
from interp.registry import BUILTIN, MOVED_MODULES
from tests import golden

SWEEPS = Path(__file__).resolve().parents[1] / "fixtures" / "sweeps"
#: Per-run columns that depend on the machine, not on the analysis.
VOLATILE = {"wall_s"}


def test_every_old_family_module_maps_to_a_module_that_registers_the_family():
    assert set(MOVED_MODULES.values()) == set(BUILTIN.values())
    for old, new in MOVED_MODULES.items():
        kind = next(k for k, module in BUILTIN.items() if module == new)
        config = RunConfig.from_dict({"family_module": old, "task": {"kind": kind}})
        assert config.task.kind == kind
        assert config.to_dict()["family_module"] == new  # rewritten with today's path
    # A new config records the module that registers its family, wherever its class lives
    # (the walk config is in graph_walk/task.py, its family in graph_walk/family.py).
    for kind, module in BUILTIN.items():
        config = RunConfig.from_dict({"task": {"kind": kind}})
        assert config.to_dict()["family_module"] == module


@pytest.mark.parametrize("name", ["two_hop_tiny", "modular_demo"])
def test_a_run_with_the_old_family_module_analyzes_like_the_golden_record(name, tmp_path):
    """The committed fixtures predate `family_module`; with the path of the version before the
    move written in, the analysis equals the golden record."""
    old = {"two_hop_tiny": "circuits.families.two_hop", "modular_demo": "circuits.families.modular"}
    source = tmp_path / "source"
    shutil.copytree(golden.RUNS / name, source / name)
    config = json.loads((source / name / "config.json").read_text())
    config["family_module"] = old[name]
    (source / name / "config.json").write_text(json.dumps(config, indent=2))
    new = golden.analyze_fixture_from(source / name, tmp_path / "work")
    recorded = golden.load_golden(name)
    problems = golden.compare(name, recorded, new)
    assert not problems, "\n".join(problems)


def _table(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["run"]: row for row in csv.DictReader(handle)}


def _same(old: str, new: str) -> bool:
    if old == new:
        return True
    try:
        a, b = float(old), float(new)
    except ValueError:
        return False
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 + 1e-6 * abs(a)


@pytest.mark.parametrize("name", ["mod_before_packages", "walk_before_packages"])
def test_a_sweep_written_before_the_move_analyzes_the_same(name, tmp_path):
    from interp.cli import main

    sweep = tmp_path / name
    shutil.copytree(SWEEPS / name, sweep)
    recorded = _table(sweep / "sweep.csv")
    (sweep / "sweep.csv").unlink()
    assert main(["sweep", "analyze", str(sweep)]) == 0
    new = _table(sweep / "sweep.csv")
    assert set(new) == set(recorded) and len(new) == 2
    for run, old_row in recorded.items():
        assert set(new[run]) == set(old_row), run
        differ = [
            f"{k}: {old_row[k]!r} -> {new[run][k]!r}"
            for k in old_row
            if k not in VOLATILE and not _same(old_row[k], new[run][k])
        ]
        assert not differ, f"{run}: " + "; ".join(differ)


def test_a_fixed_walk_run_from_before_its_validation_split_analyzes_the_same(tmp_path):
    """A fixed-corpus walk run written at 2a218c9, before fixed corpora got a `val` split: it
    loads on the splits it has and its table equals the one that version wrote
    (`tests/fixtures/golden/walk_fixed_before_val_table.csv`)."""
    from interp.cli import main

    run_dir = tmp_path / "walk_fixed_before_val"
    shutil.copytree(golden.RUNS / "walk_fixed_before_val", run_dir)
    assert main(["analyze", str(run_dir), "--no-figures", "--quiet"]) == 0
    with open(golden.GOLDEN / "walk_fixed_before_val_table.csv", newline="") as handle:
        recorded = list(csv.DictReader(handle))
    with open(run_dir / "analysis" / "table.csv", newline="") as handle:
        new = list(csv.DictReader(handle))
    assert [r["step"] for r in new] == [r["step"] for r in recorded] == ["0", "20", "40"]
    for old_row, new_row in zip(recorded, new):
        differ = [k for k in old_row if not _same(old_row[k], new_row.get(k, "missing"))]
        assert not differ, f"step {old_row['step']}: {differ}"
