"""The example notebooks run top to bottom on tiny settings (INTERP_NB_TINY=1) and are committed
clean."""

from __future__ import annotations

import json
import re

import pytest

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
