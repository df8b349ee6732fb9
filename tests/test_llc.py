"""The SGLD estimator of the local learning coefficient (`circuits.analyses.llc`) against known
answers: d/2 for a regular model, and the identifiable dimension (not the parameter count)
for an over-parametrized one; and on a transformer checkpoint through the family's loss."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.analyses.llc import LLCSettings, estimate_llc, model_llc

K, C, N = 4, 3, 4000
SETTINGS = LLCSettings(chains=6, steps=400, burnin=200, lr=1e-3, gamma=1.0, seed=0)


def softmax_regression():
    """Data from a softmax regression with K inputs and C classes, fitted by maximum
    likelihood: K(C − 1) identifiable parameters (one shift per row is free)."""
    generator = torch.Generator().manual_seed(0)
    true = torch.randn(K, C, generator=generator)
    x = torch.randint(0, K, (N,), generator=generator)
    y = torch.multinomial(true[x].softmax(-1), 1, generator=generator).squeeze(1)
    counts = torch.zeros(K, C).index_put_((x, y), torch.ones(N), accumulate=True)
    fitted = (counts / counts.sum(1, keepdim=True)).log()  # the MLE, in closed form
    return x, y, fitted


def expected(gamma: float, curvature_scale: float) -> float:
    """½ Σ nβh/(nβh + γ) over the identifiable directions: d/2 when nβh ≫ γ."""
    n_beta = N / math.log(N)
    return 0.5 * K * (C - 1) * n_beta * curvature_scale / (n_beta * curvature_scale + gamma)


def test_a_regular_model_has_llc_d_over_2():
    x, y, fitted = softmax_regression()

    def loss(p):
        return torch.nn.functional.cross_entropy(p["W"][x], y)

    estimate = estimate_llc(loss, {"W": fitted}, N, SETTINGS)
    d_half = K * (C - 1) / 2
    assert estimate.diverged == 0 and len(estimate.per_chain) == 6
    # Within 15 % of d/2 = 4 (the localization and finite chains bias it slightly low).
    assert estimate.mean == pytest.approx(d_half, rel=0.15)
    assert 0 < estimate.std < 1.5
    # Seeded: the same settings give the same chains.
    again = estimate_llc(loss, {"W": fitted}, N, SETTINGS)
    assert again.per_chain == estimate.per_chain


def test_redundant_parameters_do_not_count():
    """W = A + B has twice the parameters and the same function: the LLC stays at d/2 of the
    identifiable ones, far below half the parameter count."""
    x, y, fitted = softmax_regression()

    def loss(p):
        return torch.nn.functional.cross_entropy((p["A"] + p["B"])[x], y)

    estimate = estimate_llc(loss, {"A": fitted / 2, "B": fitted / 2}, N, SETTINGS)
    assert estimate.mean == pytest.approx(K * (C - 1) / 2, rel=0.2)
    assert estimate.mean < 0.5 * (2 * K * C) / 2


def test_chains_that_leave_the_basin_are_dropped_and_counted():
    from dataclasses import replace

    x, y, fitted = softmax_regression()

    def loss(p):
        return torch.nn.functional.cross_entropy(p["W"][x], y)

    escape = math.log(C)  # the uniform predictor's loss above the fitted one's
    wild = estimate_llc(loss, {"W": fitted}, N, replace(SETTINGS, lr=0.5, escape=escape))
    assert wild.diverged == 6 and math.isnan(wild.mean) and wild.eps == 0.5
    assert any(max(t) - wild.init_loss > escape for t in wild.traces)
    calm = estimate_llc(loss, {"W": fitted}, N, replace(SETTINGS, escape=escape))
    assert calm.diverged == 0 and calm.mean == pytest.approx(K * (C - 1) / 2, rel=0.15)


def test_checkpoint_llc_runs_through_the_family_loss_and_is_seeded(tiny_run):
    import interp
    from interp.registry import family_of

    run = interp.load_run(tiny_run)
    family = family_of(run.config)
    index = run.task.train_index
    settings = LLCSettings(chains=2, steps=40, burnin=20)
    args = (
        run.task.tokens[index],
        run.task.labels[index],
        family.training_loss("cross_entropy"),
        family.forward,
        settings,
    )
    model = run.model_at(run.steps[-1])
    first = model_llc(model, *args)
    assert math.isfinite(first.mean) and first.mean > 0
    assert model_llc(model, *args).per_chain == first.per_chain
    # The checkpoint itself is untouched by the chains.
    assert first.init_loss == pytest.approx(model_llc(model, *args).init_loss)


def test_analyze_llc_puts_it_on_the_timeline_with_its_spread(tiny_run, tmp_path):
    import json
    import shutil

    from typer.testing import CliRunner

    from interp.cli import app

    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)
    result = CliRunner().invoke(app, ["analyze", str(run_dir), "--llc", "-q", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["parts"] == ["llc"] and "llc moves" in info["leads"]
    lines = (run_dir / "analysis" / "table.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    estimated = [r for r in rows if r["llc"] not in ("", "nan")]
    assert 2 <= len(estimated) <= 20
    assert all(float(r["llc_std"]) >= 0 and float(r["llc_chains"]) == 4 for r in estimated)
    # One step size for the whole run (the largest whose probe chains stayed in the basin).
    assert len({r["llc_eps"] for r in estimated}) == 1 and float(estimated[0]["llc_eps"]) <= 1e-4
    assert "Local learning coefficient" in (run_dir / "analysis" / "report.html").read_text()
