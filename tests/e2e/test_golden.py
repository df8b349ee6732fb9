"""Golden test: `interp analyze` on the committed fixture runs still gives the recorded results.

It freezes the analysis behaviour so that refactors can prove they changed nothing: each
fixture run (tests/fixtures/runs/, written by an older version, README.md there) is
copied to a temporary folder and analyzed through the CLI with every part that applies,
and the summary and table are compared with tests/fixtures/golden/<name>.json
(`tests.golden`). A failure lists every difference with the fixture, column, step and
both values. If the change is a bug, fix it; if it is deliberate, re-record with
`python -m tests.golden record NAME` and say in the commit which numbers moved and why.
"""

from __future__ import annotations

import copy
import json
import re
import shutil

import pytest

from tests import golden

#: The modular report's sections (circuits/viz/report.py) when every view renders, in order.
MODULAR_REPORT_SECTIONS = [
    "Transition timeline",
    "Circuit graph",
    "Fourier spectrum of the embedding and W_L",
    "Embedding Fourier norms over training",
    "Neuron-frequency clusters",
    "Direct logit attribution",
    "Direct logit attribution over training",
    "Attention patterns (circuitsvis)",
    "Attention from the answer position over training",
]


@pytest.fixture(scope="module", params=golden.NAMES)
def analyzed(request, tmp_path_factory):
    """(name, recorded record, new record): each fixture analyzed once per test session."""
    name = request.param
    new = golden.analyze_fixture(name, tmp_path_factory.mktemp(name))
    return name, golden.load_golden(name), new


def _report(problems: list[str], limit: int = 40) -> str:
    shown = problems[:limit] + (
        [f"... and {len(problems) - limit} more"] if len(problems) > limit else []
    )
    return f"{len(problems)} differences from the golden record:\n" + "\n".join(shown)


def test_key_frequencies_are_unchanged(analyzed):
    name, recorded, new = analyzed
    assert new["key_frequencies"] == recorded["key_frequencies"], (
        f"{name}: key frequencies: recorded {recorded['key_frequencies']}, now "
        f"{new['key_frequencies']}"
    )


def test_phases_and_leads_are_unchanged(analyzed):
    name, recorded, new = analyzed
    problems = golden.compare_summary(name, recorded, new, ("phases", "leads"))
    assert not problems, _report(problems)


def test_table_is_unchanged(analyzed):
    name, recorded, new = analyzed
    problems = golden.compare_table(name, recorded["table"], new["table"])
    assert not problems, _report(problems)


def test_summary_is_unchanged(analyzed):
    name, recorded, new = analyzed
    problems = golden.compare_summary(name, recorded, new, golden.SUMMARY_FIELDS)
    assert not problems, _report(problems)


def test_fixture_folders_hold_only_the_run(analyzed):
    """Analysis ran on a copy: the committed folder has exactly the run's files, no `analysis/`."""
    name, _recorded, _new = analyzed
    folder = golden.RUNS / name
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {
        "config.json",
        "manifest.json",
        "metrics.jsonl",
        "provenance.json",
        "split.safetensors",
        *(entry["file"] for entry in manifest["checkpoints"]),
    }
    found = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert found == expected, (
        f"{name}: unexpected {sorted(found - expected)}, missing {sorted(expected - found)}"
    )


def test_golden_records_are_not_degenerate():
    """A re-recorded golden file must still say something: a modular run with key frequencies
    and a grokked end, entity runs whose accuracies are neither all 0 nor all 1."""
    modular = golden.load_golden("modular_demo")
    assert modular["key_frequencies"] and modular["phases"]["stable"]["start"] is not None
    assert modular["parts"] == ["fourier", "attention", "attribution"]
    for name in ("two_hop_tiny", "comparison_tiny"):
        record = golden.load_golden(name)
        assert record["parts"] == ["logit_lens", "patching", "probes"], name
        accuracies = {float(row[k]) for row in record["table"] for k in row if k.endswith("_acc")}
        assert accuracies - {0.0, 1.0}, f"{name}: every accuracy is 0 or 1"


def test_comparison_reports_each_kind_of_change():
    """The comparison itself: a change just past the tolerance, a lost column, other key
    frequencies or phases are each reported with the fixture, column, step and both values."""
    recorded = golden.load_golden("modular_demo")
    assert golden.compare("modular_demo", recorded, copy.deepcopy(recorded)) == []

    new = copy.deepcopy(recorded)
    row = new["table"][3]
    old_value = float(row["test_loss"])
    row["test_loss"] = repr(old_value * (1 + 3 * golden.RTOL))
    row["train_key_frequencies"] = "15 19"
    del row["gini_embed"]
    for other in new["table"]:
        other.pop("gini_embed", None)
        other["a_new_column"] = "1"
    new["key_frequencies"] = [15, 21]
    new["phases"]["cleanup"]["end"] = 725
    new["final"]["circuit_score"] *= 1 + 3 * golden.RTOL
    problems = golden.compare("modular_demo", recorded, new)
    text = "\n".join(problems)
    step = row["step"]
    assert (
        f"modular_demo: column 'test_loss' at step {step}: recorded "
        f"{recorded['table'][3]['test_loss']!r}" in text
    )
    assert (
        f"column 'train_key_frequencies' at step {step}: recorded '15 19 21', now '15 19'" in text
    )
    assert "table columns missing now: ['gini_embed']" in text
    assert "new columns, not compared: ['a_new_column']" in text
    assert "summary field 'key_frequencies': recorded [15, 21, 19], now [15, 21]" in text
    assert "summary field 'phases'" in text and "summary final.circuit_score" in text
    assert len(problems) == 7  # six differences and the list of new columns

    within = copy.deepcopy(recorded)
    within["table"][3]["test_loss"] = repr(old_value * (1 + golden.RTOL / 3))
    assert golden.compare("modular_demo", recorded, within) == []


def test_modular_report_has_every_section(tmp_path):
    """The HTML report of the modular fixture renders every view it renders today, in order,
    and none failed (a view that raises is moved to "Views not in this report")."""
    from interp.cli import main

    run_dir = tmp_path / "modular_demo"
    shutil.copytree(golden.RUNS / "modular_demo", run_dir)
    assert main(["analyze", str(run_dir), "--threads", "1", "--quiet"]) == 0
    report = run_dir / "analysis" / "report.html"
    assert report.is_file()
    page = report.read_text(encoding="utf-8")
    titles = re.findall(r"<h2>([^<]*)</h2>", page)
    present = [t for t in titles if t in MODULAR_REPORT_SECTIONS]
    assert present == MODULAR_REPORT_SECTIONS, f"sections now: {titles}"
    assert "Views not in this report" not in page, re.findall(r"<li><b>[^<]*</b>: [^<]*</li>", page)
    assert "k=15, k=21, k=19" in page
    assert "memorization 0–75; circuit formation 75–450; cleanup 450–700; stable 700–…" in page
