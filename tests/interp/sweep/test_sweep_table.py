"""The sweep table and its statistics against a planted answer: run folders whose metrics make
the generalization step exactly 1000/wd (times a small per-seed factor), one weight decay
whose runs cannot generalize in their budget, and the four outcome classes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import interp
from circuits.viz.sweep_figures import plot_phase_diagram
from circuits.viz.sweep_report import write_sweep_report
from interp import run_writer, runs
from interp.sweep.runner import RUNS_DIR, SWEEP_FILE
from tests.conftest import tiny_config

WDS = (0.25, 0.5, 1.0, 2.0)
SEED_FACTOR = {0: 0.95, 1: 1.0, 2: 1.05}


def planted_metrics(fit: int | None, gen: int | None, last: int, circuit: int | None = None):
    rows = []
    for step in range(0, last + 1, 10):
        train = 1.0 if fit is not None and step >= fit else 0.3
        test = 1.0 if gen is not None and step >= gen else 0.05
        score = 0.9 if circuit is not None and step >= circuit else 0.1
        rows.append(
            {
                "step": step,
                "train_acc": train,
                "test_acc": test,
                "circuit_score": score,
                "time_s": step / 100,
            }
        )
    return rows


def plant_sweep(root, entries):
    """A sweep folder: `entries` are (name, axes, fit, gen, last, circuit)."""
    manifest = {"format": 1, "axes": ["train.weight_decay", "task.train_frac", "seed"], "runs": []}
    for name, axes, fit, gen, last, circuit in entries:
        run_dir = root / RUNS_DIR / name
        run_dir.mkdir(parents=True)
        config = tiny_config(train__weight_decay=axes["train.weight_decay"])
        runs.atomic_write_json(run_dir / runs.CONFIG_FILE, config.to_dict())
        run_writer.write_metrics(run_dir, planted_metrics(fit, gen, last, circuit))
        manifest["runs"].append({"name": name, "axes": axes, "status": "done"})
    runs.atomic_write_json(root / SWEEP_FILE, manifest)
    return interp.load_sweep(root)


def _entries():
    out = []
    for wd in WDS:
        for seed, factor in SEED_FACTOR.items():
            gen = int(round(1000 / wd * factor / 10) * 10)
            axes = {"train.weight_decay": wd, "task.train_frac": 0.4, "seed": seed}
            out.append((f"wd={wd},seed={seed}", axes, 100, gen, 4500, gen - 200))
    for seed in SEED_FACTOR:  # 1000/0.125 = 8000 steps: beyond the 4500-step budget
        axes = {"train.weight_decay": 0.125, "task.train_frac": 0.4, "seed": seed}
        out.append((f"wd=0.125,seed={seed}", axes, 100, None, 4500, None))
    return out


def test_the_fit_recovers_the_planted_exponent_and_censored_runs_stay_in_the_table(tmp_path):
    sweep = plant_sweep(tmp_path, _entries())
    table = sweep.table
    assert len(table) == 15
    censored = table[table["train.weight_decay"] == 0.125]
    assert censored["generalized_censored"].all() and (censored["generalized_step"] == 4500).all()
    assert (censored["outcome"] == "memorization").all()
    one = table[(table["train.weight_decay"] == 1.0) & (table["seed"] == 1)].iloc[0]
    assert one["generalized_step"] == 1000 and one["memorized_step"] == 100
    assert one["circuit_step"] == 800 and one["circuit_lead"] == 200
    assert one["outcome"] == "grokking" and math.isnan(one["collapse_step"])

    curve = sweep.event_curve("train.weight_decay")
    row = curve[curve["train.weight_decay"] == 0.5].iloc[0]
    assert row["n"] == 3 and row["n_censored"] == 0 and row["method"] == "t"
    assert row["low"] < 2000 < row["high"] and row["mean"] == pytest.approx(2000, rel=0.01)
    assert curve[curve["train.weight_decay"] == 0.125].iloc[0]["method"] == "all censored"

    fit = sweep.fit("train.weight_decay")
    assert fit.fit.params["b"] == pytest.approx(-1.0, abs=0.02)
    lo, hi = fit.fit.interval["b"]
    assert lo < -1.0 < hi and hi - lo < 0.2
    assert fit.fit.n == 12 and fit.excluded_censored == 3


def test_the_phase_diagram_shows_the_majority_class_of_each_cell(tmp_path):
    entries = []
    cells = {  # (frac, wd) -> (fit, gen) of its three seeds
        (0.3, 0.1): [(None, None)] * 3,  # confusion
        (0.3, 1.0): [(100, None)] * 2 + [(100, 1500)],  # memorization 2/3
        (0.5, 0.1): [(100, 1500)] * 3,  # grokking
        (0.5, 1.0): [(100, 120)] * 3,  # comprehension
    }
    for (frac, wd), runs_ in cells.items():
        for seed, (fit, gen) in enumerate(runs_):
            axes = {"train.weight_decay": wd, "task.train_frac": frac, "seed": seed}
            entries.append((f"frac={frac},wd={wd},seed={seed}", axes, fit, gen, 2000, None))
    sweep = plant_sweep(tmp_path, entries)
    fig = plot_phase_diagram(sweep, "train.weight_decay", "task.train_frac")
    z = np.asarray(fig.data[0].z)
    from interp.sweep.table import OUTCOMES

    names = [[OUTCOMES[int(v)] for v in row] for row in z]
    assert names == [["confusion", "memorization"], ["grokking", "comprehension"]]
    assert "memorization 2/3" in json.dumps(fig.data[0].text)
    page = tmp_path / "report.html"
    write_sweep_report(sweep, page)
    html = page.read_text()
    # Generalization at 2 weight decays per fraction at most: too few for a fit with an interval.
    assert "Phase diagram" in html and "Power-law fits" not in html
