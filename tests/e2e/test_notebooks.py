"""The example notebooks run top to bottom on tiny settings (INTERP_NB_TINY=1) and are committed
clean."""

from __future__ import annotations

import json
import re

import pytest

import interp
from tests.notebook_run import EXPERIMENTS, executed_notebook

NOTEBOOKS = sorted(p.name for p in EXPERIMENTS.glob("*.ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_carry_no_outputs(name):
    nb = json.loads((EXPERIMENTS / name).read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, name


def _outputs(nb) -> str:
    return "\n".join(
        json.dumps(out.get("data", {})) + out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
    )


def test_grokking_walkthrough_runs_offline():
    nb, workdir = executed_notebook("grokking_walkthrough.ipynb")
    text = _outputs(nb)
    assert text.count("var CircuitsVis=") == 1  # the circuitsvis bundle, once per notebook
    assert len(re.findall(r"plotly\.js v\d", text)) == 1  # plotly.js, once
    assert not re.search(r"src=\\?[\"']https?:", text)  # nothing from a CDN (no MathJax either)
    assert text.count("application/vnd.plotly.v1+json") >= 5
    assert (workdir / "run" / "analysis" / "report.html").stat().st_size > 1_000_000


def test_two_hop_walkthrough_runs():
    nb, _ = executed_notebook("two_hop_walkthrough.ipynb")
    text = _outputs(nb)
    assert "Logit lens" in text and "Causal tracing" in text and text.count("var CircuitsVis=") == 1


def test_sweep_walkthrough_runs_a_tiny_sweep():
    nb, workdir = executed_notebook("sweep_walkthrough.ipynb")
    text = _outputs(nb)
    assert "Phase diagram" in text and len(re.findall(r"plotly\.js v\d", text)) == 1
    assert (workdir / "run" / "sweep.csv").exists()
    assert (workdir / "run" / "sweep_report.html").stat().st_size > 1_000_000
    import pandas as pd

    table = pd.read_csv(workdir / "run" / "sweep.csv")
    assert len(table) == 6 and (table["status"] == "done").all()


def test_scaling_walkthrough_fits_a_tiny_walk_sweep():
    nb, workdir = executed_notebook("scaling_walkthrough.ipynb")
    text = _outputs(nb)
    assert "c = H: alpha = " in text and "c free = " in text and "MSE exp/power" in text
    assert "count learner knowing the graph" in text
    assert len(re.findall(r"plotly\.js v\d", text)) == 1
    report = (workdir / "run" / "sweep_report.html").read_text(encoding="utf-8")
    assert "Scaling against final_tokens_seen" in report


def test_infinite_compute_walkthrough_runs_the_fixed_data_study_on_a_tiny_graph():
    nb, workdir = executed_notebook("infinite_compute_walkthrough.ipynb")
    text, run = _outputs(nb), workdir / "run"
    assert len(re.findall(r"plotly\.js v\d", text)) == 1
    assert text.count("application/vnd.plotly.v1+json") >= 2
    # 1. The standard recipe at 2, 8 and 32 epochs: the middle budget is best on validation.
    assert "3/3 runs done, 0 failed" in text
    table = interp.load_sweep(run / "standard_epochs").done().sort_values("train.steps")
    val = table["final_val_excess_loss"].tolist()
    assert len(val) == 3 and val[1] < val[0] and val[1] < val[2]
    # 2. The search accepted a point that no neighbour beats, and printed its certificate.
    assert re.search(r"\(one group\): accepted train\.lr=[\d.]+, train\.weight_decay=[\d.]+", text)
    assert re.search(r"train\.(lr|weight_decay) [-+]1 \([\d.]+\): \d", text)
    (group,) = json.loads((run / "search" / "search.json").read_text())["groups"]
    assert group["status"] == "accepted" and len(group["confirm_runs"]) == 2
    assert all(c["value"] is None or c["value"] >= group["value"] for c in group["certificate"])
    # 3. The ensemble of the accepted point's three runs, beside both count learners.
    assert "ensemble of 3, averaging logits: excess" in text
    counts = r"count learners on the same [\d,]+ transitions: knowing the neighbours \d"
    assert re.search(counts, text)
    # 4. Students taught by the three members together, at both fractions.
    for frac in (0.5, 1.0):
        task = json.loads((run / f"student_frac={frac}" / "config.json").read_text())["task"]
        assert task["teacher_frac"] == frac and task["teacher"].count("+") == 2
        assert f"student {frac}: excess" in text
    assert "single (the members' mean)" in text
    # 5. Inside: per-node excess by corpus visits, and context resampling on both walk sets.
    assert "expected excess, summed over nodes: member" in text
    assert text.count("corpus walks Δloss") == 3 and text.count("test walks Δloss") == 3
