"""The SGLD estimator of the local learning coefficient (`circuits.analyses.llc`) against known
answers: d/2 for a regular model, and the identifiable dimension (not the parameter count)
for an over-parametrized one; and on a transformer checkpoint through the family's loss.
The batched chains against a naive one-chain-at-a-time loop, the one-layer chain loss
(`circuits.analyses.llc_loss`) against the model's own forward, and the resumed probe chain
against a fresh one."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from circuits.analyses.llc import LLCSettings, estimate_llc, model_llc

K, C, N = 4, 3, 4000
#: One chain's estimate varies by ~1 around d/2 = 4 here: 12 chains put the mean's standard
#: error near 0.3, well inside the tolerances below (over seeds 0-11 the 12-chain means
#: average 3.8; the theory for γ = 1 is 3.85).
SETTINGS = LLCSettings(chains=12, steps=400, burnin=200, lr=1e-3, gamma=1.0, seed=0)


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
    assert estimate.diverged == 0 and len(estimate.per_chain) == SETTINGS.chains
    # Within 15 % of d/2 = 4 (the localization and finite chains bias it slightly low).
    assert estimate.mean == pytest.approx(d_half, rel=0.15)
    assert 0 < estimate.std < 1.5
    # Seeded: the same settings give the same chains.
    again = estimate_llc(loss, {"W": fitted}, N, SETTINGS)
    assert again.per_chain == estimate.per_chain


def test_drift_flags_chains_still_climbing_from_w_star():
    """`drift` (second half of the draws − first half) is within the chain spread when the
    chains have settled, and large while they still climb from w* (no burn-in, few steps):
    the case where the estimate is biased low. It cannot see what relaxes slower than the
    chain's length."""
    x, y, fitted = softmax_regression()

    def loss(p):
        return torch.nn.functional.cross_entropy(p["W"][x], y)

    settled = estimate_llc(loss, {"W": fitted}, N, SETTINGS)
    assert abs(settled.drift) < settled.std
    climbing = estimate_llc(loss, {"W": fitted}, N, replace(SETTINGS, steps=60, burnin=0))
    assert climbing.drift > climbing.std and climbing.mean < settled.mean - 1
    # Necessary, not sufficient: with 20 draws after 20 of burn-in the estimate is still half
    # of d/2, yet the drift is inside the spread (the slow directions barely move in 40 steps).
    short = estimate_llc(loss, {"W": fitted}, N, replace(SETTINGS, steps=40, burnin=20))
    assert short.mean < settled.mean - 1 and abs(short.drift) < short.std
    # By hand for one chain: nβ (mean of the second half − mean of the first half).
    n_beta = N / math.log(N)
    trace = climbing.traces[0]
    by_hand = n_beta * (sum(trace[30:]) / 30 - sum(trace[:30]) / 30)
    one = estimate_llc(loss, {"W": fitted}, N, replace(SETTINGS, chains=1, steps=60, burnin=0))
    assert one.drift == pytest.approx(by_hand, rel=1e-6)


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
    assert wild.diverged == SETTINGS.chains and math.isnan(wild.mean) and wild.eps == 0.5
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
    assert all(math.isfinite(float(r["llc_drift"])) for r in estimated)
    assert {(r["llc_steps"], r["llc_burnin"]) for r in estimated} == {("200", "100")}
    unsettled = sum(float(r["llc_drift"]) > float(r["llc_std"]) for r in estimated)
    assert info["llc"] == {
        "estimated": len(estimated),
        "eps": float(estimated[0]["llc_eps"]),
        "steps": 200,
        "unsettled": unsettled,
    }
    assert "Local learning coefficient" in (run_dir / "analysis" / "report.html").read_text()


def test_llc_steps_and_chains_set_the_chains(tiny_run, tmp_path, capsys):
    """`--llc-steps 40 --llc-chains 2`: two 40-step chains (20 burn-in) per checkpoint, said in
    the table; the flags without --llc or below 2 are usage errors (exit 2)."""
    import shutil

    from interp.cli import main

    run_dir = tmp_path / "tiny"
    shutil.copytree(tiny_run, run_dir)
    argv = ["analyze", str(run_dir), "-q", "--no-figures"]
    assert main([*argv, "--llc", "--llc-steps", "40", "--llc-chains", "2"]) == 0
    lines = (run_dir / "analysis" / "table.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
    estimated = [r for r in rows if r["llc"] not in ("", "nan")]
    assert estimated
    assert {(r["llc_steps"], r["llc_burnin"], r["llc_chains"]) for r in estimated} == {
        ("40", "20", "2")
    }
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("llc: "))
    assert line.startswith(f"llc: {len(estimated)} checkpoints, 40-step chains at eps ")
    climbing = sum(float(r["llc_drift"]) > float(r["llc_std"]) for r in estimated)
    assert (f"still climbing at {climbing} " in line) == (climbing > 0), line
    assert ("--llc-steps 80" in line) == (climbing > 0), line
    assert main([*argv, "--llc-steps", "40"]) == 2
    assert main([*argv, "--llc", "--llc-chains", "1"]) == 2


def test_sized_settings():
    settings = LLCSettings().sized(400)
    assert (settings.steps, settings.burnin, settings.chains) == (400, 200, 4)
    assert LLCSettings().sized(chains=8) == replace(LLCSettings(), chains=8)


def _sequential_chains(loss, params: dict, n: int, settings: LLCSettings) -> list[float]:
    """The naive reference: one chain after another, one parameter tensor at a time, each
    chain with its own seeded noise (`chain_seeds`) drawn for all parameters at once."""
    from circuits.analyses.llc import chain_seeds

    n_beta = n / math.log(n)
    init = float(loss(params))
    eps, gamma = settings.lr, settings.gamma
    values = []
    for seed in chain_seeds(settings.seed, settings.chains):
        generator = torch.Generator().manual_seed(seed)
        w = {k: v.clone() for k, v in params.items()}
        trace = []
        for _ in range(settings.steps):
            w = {k: v.detach().requires_grad_(True) for k, v in w.items()}
            value = loss(w)
            grads = torch.autograd.grad(value, list(w.values()))
            trace.append(float(value.detach()))
            noise = torch.randn(sum(v.numel() for v in w.values()), generator=generator)
            noise = noise.split([v.numel() for v in w.values()])
            with torch.no_grad():
                for (name, v), g, z in zip(w.items(), grads, noise):
                    drift = n_beta * g + gamma * (v - params[name])
                    v.add_(-0.5 * eps * drift + math.sqrt(eps) * z.view(v.shape))
        kept = trace[settings.burnin :]
        values.append(n_beta * (sum(kept) / len(kept) - init))
    return values


def test_batched_chains_equal_sequential_chains():
    """The chains run as one batch (one flat weight tensor, one graph, one backward pass)
    give each chain the numbers it gets alone: same seeds, same paths, to float rounding."""
    x, y, fitted = softmax_regression()

    def loss(p):
        return torch.nn.functional.cross_entropy((p["A"] + p["B"])[x], y)

    params = {"A": fitted / 2, "B": fitted / 2}
    settings = replace(SETTINGS, chains=3, steps=120, burnin=60)
    batched = estimate_llc(loss, params, N, settings)
    sequential = _sequential_chains(loss, params, N, settings)
    assert batched.per_chain == pytest.approx(sequential, rel=1e-5)


def test_the_one_layer_loss_equals_the_models_own_forward(tiny_run):
    """The fast chain loss (MLP output folded into the unembedding, oneDNN products) against
    the family's forward under vmap: values and gradients at perturbed weights, both GEMM
    routes."""
    import interp
    from circuits.analyses import llc_loss
    from interp.registry import family_of

    run = interp.load_run(tiny_run)
    family = family_of(run.config)
    index = run.task.train_index
    args = (
        run.task.tokens[index],
        run.task.labels[index],
        family.training_loss("cross_entropy"),
        family.forward,
    )
    model = run.model_at(run.steps[-1])
    params, generic = llc_loss.chain_loss(model, *args, fast=False)
    _, fast = llc_loss.chain_loss(model, *args)
    assert isinstance(fast, llc_loss.OneLayerLoss)
    generator = torch.Generator().manual_seed(0)
    stacked = {
        k: (v + 0.05 * torch.randn((3, *v.shape), generator=generator)).requires_grad_(True)
        for k, v in params.items()
    }
    expected = generic(stacked)
    expected_grads = torch.autograd.grad(expected.sum(), list(stacked.values()))
    for linear in (llc_loss.onednn_linear, torch.nn.functional.linear):
        fast.linear = linear
        got = fast(stacked)
        grads = torch.autograd.grad(got.sum(), list(stacked.values()))
        assert torch.allclose(got, expected, rtol=1e-5)
        for g, e in zip(grads, expected_grads):
            assert torch.allclose(g, e, rtol=1e-4, atol=1e-6)


def test_the_probe_chain_is_resumed_not_rerun(tiny_run):
    """`--llc`'s step-size probe is chain 0's first `burnin` steps: going on from it gives
    the numbers of the chains run from the start."""
    import interp
    from circuits.analyses.llc import sample_chains
    from circuits.analyses.llc_loss import chain_loss
    from interp.registry import family_of

    run = interp.load_run(tiny_run)
    family = family_of(run.config)
    index = run.task.train_index
    labels = run.task.labels[index]
    params, loss_of = chain_loss(
        run.model_at(run.steps[-1]),
        run.task.tokens[index],
        labels,
        family.training_loss("cross_entropy"),
        family.forward,
    )
    settings = LLCSettings(chains=3, steps=40, burnin=20)
    probe = replace(settings, chains=1, steps=20, burnin=0)
    probed, chains = sample_chains(loss_of, params, labels.numel(), probe)
    resumed, _ = sample_chains(loss_of, params, labels.numel(), settings, chains)
    fresh, _ = sample_chains(loss_of, params, labels.numel(), settings)
    assert resumed.traces[0][:20] == probed.traces[0]
    assert resumed.per_chain == pytest.approx(fresh.per_chain, rel=1e-5)


@pytest.mark.parametrize("change", [{"normalization": "LN"}, {"n_layers": 2}])
def test_models_the_one_layer_loss_does_not_cover_take_the_generic_path(tiny_run, change):
    import interp
    from circuits.analyses import llc_loss
    from interp.model import build_model
    from interp.registry import family_of

    run = interp.load_run(tiny_run)
    family = family_of(run.config)
    task = run.task
    model = build_model(
        replace(run.config.model, **change),
        d_vocab=run.config.task.d_vocab,
        d_vocab_out=run.config.task.d_vocab_out,
        n_ctx=task.tokens.shape[1],
    )
    index = task.train_index
    labels = task.labels[index]
    loss = family.training_loss("cross_entropy")
    params, loss_of = llc_loss.chain_loss(model, task.tokens[index], labels, loss, family.forward)
    assert not isinstance(loss_of, llc_loss.OneLayerLoss)
    assert not llc_loss.one_layer_applies(model, family.forward)
    stacked = {k: v[None] for k, v in params.items()}
    with torch.no_grad():
        expected = loss(family.forward(model, task.tokens[index]), labels)
        assert float(loss_of(stacked)[0]) == pytest.approx(float(expected), rel=1e-6)
