"""The local learning coefficient (LLC) of a checkpoint, estimated with SGLD (Lau et al.
2023; the developmental-interpretability estimator that devinterp implements).

    λ̂(w*) = nβ · (E_w[L_n(w)] − L_n(w*)),   β = 1 / log n,

where the expectation is over the tempered, localized posterior
p(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²), sampled by SGLD:

    w ← w − (ε/2) (nβ ∇L_n(w) + γ (w − w*)) + N(0, ε).

L_n is the training loss on all n training examples (full batch: the quantity measured,
L(w) − L(w*), is of order λ/(nβ), far below minibatch noise). The first `burnin` steps of
each chain are discarded, the rest averaged; the estimate is the mean over `chains` seeded
chains, reported with their standard deviation; a checkpoint's chains run as one batch
(`sample_chains`; their loss: `circuits.analyses.llc_loss`). For a regular model (a non-degenerate
minimum) λ = d/2 with d the number of identifiable parameters (`tests/circuits/test_llc.py`); a
degenerate (singular) one has less, which is what makes the LLC a progress measure.

When it is unreliable: ε too large for the curvature (chains leave the basin: non-finite
or more than `escape` above L(w*), dropped and counted in `diverged`; `analyze_llc` lowers ε
for the whole run until a probe stays in), too few steps to mix (biased low), γ large against
nβ·curvature (the localization, not the loss, confines the chain: biased low), or w* not a
minimum (early checkpoints: the chain descends and the estimate can be negative).
devinterp 2.x computes the same estimator but is built around language-model datasets
(HF `datasets` with `input_ids`, zarr output) and averages its burn-in into the estimate;
this one runs on the family's training tensors directly (docs/circuits.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class LLCSettings:
    """SGLD chain settings (documented defaults; `seed` makes the chains reproducible)."""

    chains: int = 4
    steps: int = 200
    burnin: int = 100
    #: ε, the SGLD step size (`analyze_llc`: the first rung of its ladder)
    lr: float = 1e-4
    #: γ, the localization strength
    gamma: float = 100.0
    seed: int = 0
    #: a chain whose loss rises more than this above L(w*) has left the basin (`escaped`):
    #: it is dropped like a non-finite one. `analyze_llc` sets it to log(classes), the loss
    #: of predicting uniformly.
    escape: float = math.inf

    def sized(self, steps: int | None = None, chains: int | None = None) -> LLCSettings:
        """These settings with `steps` per chain (then the first half burn-in) and `chains`
        chains (`interp analyze --llc-steps/--llc-chains`)."""
        longer = steps is not None and steps != self.steps
        settings = replace(self, steps=steps, burnin=steps // 2) if longer else self
        return replace(settings, chains=chains or settings.chains)


@dataclass(frozen=True)
class LLCEstimate:
    mean: float
    std: float
    per_chain: list[float]
    #: each chain's loss after every step (burn-in included), for diagnostics
    traces: list[list[float]]
    init_loss: float
    #: chains dropped: non-finite or escaped from the basin (`escaped`)
    diverged: int
    #: the SGLD step size the chains ran at
    eps: float = math.nan
    #: whether the chains had settled: nβ (mean loss over the second half of the draws − over
    #: the first half), averaged over the chains kept; ~0 (within `std`) at equilibrium,
    #: positive while the chains are still climbing from w* (the estimate is then biased low)
    drift: float = math.nan
    #: the chains' length and the draws discarded at their start
    steps: int = 0
    burnin: int = 0


def estimate_llc(
    loss_fn: Callable[[dict[str, Tensor]], Tensor],
    params: dict[str, Tensor],
    n: int,
    settings: LLCSettings = LLCSettings(),
) -> LLCEstimate:
    """The LLC at `params` (w*) of `loss_fn(params) -> mean loss over the n examples`."""
    from circuits.analyses.llc_loss import chainwise

    return sample_chains(chainwise(loss_fn), params, n, settings)[0]


@dataclass(frozen=True)
class Chains:
    """Where SGLD chains stand, to go on from there (`sample_chains`'s `resume`): their flat
    weights [chain, parameter] (in `params` order), their noise generators' states, and their
    loss traces so far."""

    weights: Tensor
    rng_states: list[Tensor]
    traces: list[list[float]]


def chain_seeds(seed: int, chains: int) -> list[int]:
    """Chain c draws its noise from its own generator, seeded with the c-th number drawn from
    `seed`: a chain's path does not depend on how many chains run beside it, so batched
    chains equal sequential ones and the step-size probe's chain is chain 0's beginning."""
    generator = torch.Generator().manual_seed(seed)
    return [int(torch.randint(2**62, (1,), generator=generator)) for _ in range(chains)]


def sample_chains(
    loss_of: Callable[[dict[str, Tensor]], Tensor],
    params: dict[str, Tensor],
    n: int,
    settings: LLCSettings = LLCSettings(),
    resume: Chains | None = None,
) -> tuple[LLCEstimate, Chains]:
    """The LLC at `params` (w*) from `settings.chains` SGLD chains run as one batch:
    `loss_of(stacked) -> [chain]` gives every chain's mean loss over the n examples, where
    `stacked[name]` holds the chains' copies of `params[name]` on a leading axis (each chain
    gets its gradient from one backward pass of their sum). All chains' weights live in one
    flat [chain, parameter] tensor, so a step's update is a few whole-tensor ops. `resume`
    (chains already run for some steps, as the first chains) goes on from where they stand;
    the chains returned are where all of them end."""
    n_beta = n / math.log(n)
    names = list(params)
    shapes = [params[k].shape for k in names]
    sizes = [params[k].numel() for k in names]
    center = torch.cat([params[k].detach().reshape(-1) for k in names])

    def stacked(weights: Tensor) -> dict[str, Tensor]:
        views = weights.split(sizes, dim=1)
        return {k: v.view(len(weights), *s) for k, v, s in zip(names, views, shapes)}

    with torch.no_grad():
        init_loss = float(loss_of(stacked(center[None]))[0])
    generators = [
        torch.Generator().manual_seed(s) for s in chain_seeds(settings.seed, settings.chains)
    ]
    weights = center.repeat(settings.chains, 1)
    traces: list[list[float]] = [[] for _ in generators]
    if resume is not None:
        done = len(resume.traces[0])
        assert done <= settings.steps and all(len(t) == done for t in resume.traces)
        weights[: len(resume.traces)] = resume.weights
        for generator, state in zip(generators, resume.rng_states):
            generator.set_state(state)
        traces[: len(resume.traces)] = [list(t) for t in resume.traces]
    eps, gamma = settings.lr, settings.gamma
    noise, offset = torch.empty_like(weights), torch.empty_like(weights)
    for step in range(settings.steps):
        first = sum(len(t) > step for t in traces)  # resumed chains wait until the others catch up
        if first == settings.chains:
            continue
        active = weights[first:]
        leaf = active.detach().requires_grad_(True)
        losses = loss_of(stacked(leaf))
        (grad,) = torch.autograd.grad(losses.sum(), leaf)
        for trace, value in zip(traces[first:], losses.tolist()):
            trace.append(value)
        with torch.no_grad():
            for row, generator in zip(noise[first:], generators[first:]):
                torch.randn(row.shape, generator=generator, out=row)
            drift = grad.mul_(n_beta).add_(
                torch.sub(active, center, out=offset[first:]), alpha=gamma
            )
            active.add_(drift, alpha=-0.5 * eps).add_(noise[first:], alpha=math.sqrt(eps))
    estimate = chain_estimate(traces, init_loss, n_beta, settings)
    return estimate, Chains(weights, [g.get_state() for g in generators], traces)


def chain_estimate(
    traces: list[list[float]], init_loss: float, n_beta: float, settings: LLCSettings
) -> LLCEstimate:
    """The estimate from the chains' loss traces: per chain nβ (mean loss after burn-in −
    L(w*)), NaN for a chain that left its basin (`escaped`) or is not finite; their mean and
    standard deviation over the chains that stayed."""
    per_chain, drifts, diverged = [], [], 0
    for trace in traces:
        kept = trace[settings.burnin :]
        value = n_beta * (sum(kept) / len(kept) - init_loss)
        if not math.isfinite(value) or escaped(trace, init_loss, settings.escape):
            diverged += 1
            value = float("nan")
        elif len(kept) > 1:
            first, second = kept[: len(kept) // 2], kept[len(kept) // 2 :]
            drifts.append(n_beta * (sum(second) / len(second) - sum(first) / len(first)))
        per_chain.append(value)
    finite = [v for v in per_chain if math.isfinite(v)]
    mean = _mean(finite)
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        if len(finite) > 1
        else float("nan")
    )
    return LLCEstimate(
        mean, std, per_chain, traces, init_loss, diverged, settings.lr, _mean(drifts),
        settings.steps, settings.burnin,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def escaped(trace: list[float], init_loss: float, escape: float) -> bool:
    """Whether a chain left the basin of w*: a non-finite loss, or one more than `escape`
    above L(w*) at any step."""
    return not all(math.isfinite(v) and v - init_loss <= escape for v in trace)


def model_llc(
    model, tokens: Tensor, labels: Tensor, loss, forward, settings: LLCSettings = LLCSettings()
) -> LLCEstimate:
    """The LLC of a TransformerBridge checkpoint on its training examples: `forward(model,
    tokens)` gives the logits the family's training `loss(logits, labels)` reads (tied
    weights stay tied; the chains run together, `circuits.analyses.llc_loss`). n counts the
    labels: one per sequence for answer-position families, one per position for next-token
    families (the loss is their mean)."""
    from circuits.analyses.llc_loss import chain_loss

    params, loss_of = chain_loss(model, tokens, labels, loss, forward)
    return sample_chains(loss_of, params, labels.numel(), settings)[0]


#: Checkpoints `--llc` estimates at most (evenly chosen, phase boundaries kept), and the
#: training examples (predicted labels) it uses at most (a seeded subset of the sequences;
#: n in nβ is the number of labels in it).
MAX_CHECKPOINTS = 20
MAX_EXAMPLES = 2048


def analyze_llc(
    run, result, settings: LLCSettings = LLCSettings(), workers: int = 1
) -> dict[int, LLCEstimate]:
    """The LLC at up to `MAX_CHECKPOINTS` of the analyzed checkpoints of `result` (a
    `RunAnalysis`), on up to `MAX_EXAMPLES` training labels, with the family's forward and
    training loss (`llc_inputs`); `workers` checkpoints at a time
    (`circuits.pipeline.checkpoint_map`). For walks in fresh mode the training split is
    held-out walks of the training distribution (the walks trained on are never stored): the
    LLC of the population loss, estimated on a sample."""
    tokens, labels, loss, steps = llc_inputs(run, result, settings.seed)
    data = (tokens, labels, loss, result.family.forward)
    escape = math.log(run.config.task.d_vocab_out)
    ladder = [settings.lr * STEP_FACTOR**i for i in range(LADDER)]
    for eps in ladder:  # the probe: one short chain per checkpoint, largest ε first
        probe = replace(settings, lr=eps, escape=escape, chains=1, steps=settings.burnin, burnin=0)
        probed = _estimates(run, steps, probe, *data, workers, keep_chains=True)
        if all(r.estimate.diverged == 0 for r in probed.values()):
            break
    final = replace(settings, lr=eps, escape=escape)
    # The probe's chain is chain 0's first `burnin` steps at this ε (`chain_seeds`): it goes
    # on from there instead of being run again.
    resume = {step: r.chains for step, r in probed.items()} if probe.steps <= final.steps else {}
    estimated = _estimates(run, steps, final, *data, workers, resume)
    return {step: r.estimate for step, r in estimated.items()}


def llc_inputs(run, result, seed: int):
    """What `--llc` estimates on: (tokens, labels, loss, steps) = up to `MAX_EXAMPLES`
    training labels (a subset of the sequences seeded by `seed`), as the trainer reads them,
    the family's training loss, and up to `MAX_CHECKPOINTS` of the analyzed checkpoints
    (evenly chosen, phase boundaries kept)."""
    from circuits.pipeline.figure_steps import pick_steps
    from circuits.viz.figures import phase_steps

    task = run.task
    index = task.train_index
    per_sequence = max(1, task.labels[index[:1]].numel())
    keep = max(1, MAX_EXAMPLES // per_sequence)
    if len(index) > keep:
        generator = torch.Generator().manual_seed(seed)
        index = index[torch.randperm(len(index), generator=generator)[:keep]]
    tokens, labels = task.tokens[index], task.labels[index].reshape(-1)
    loss = result.family.training_loss(run.config.train.loss)
    steps = pick_steps(result.steps, MAX_CHECKPOINTS, phase_steps(result))
    return tokens, labels, loss, steps


#: `--llc` tries ε = settings.lr × STEP_FACTOR^i, i < LADDER, and keeps the largest at which
#: a probe chain (one chain, `burnin` steps) at every estimated checkpoint stays in its basin
#: (`escaped`); the run's checkpoints are then all estimated with that one ε, so they stay
#: comparable (the LLC's scale depends on ε: compare within a run).
STEP_FACTOR = 1 / 3
LADDER = 4


def _estimates(
    run, steps, settings, tokens, labels, loss, forward, workers, resume=None, keep_chains=False
):
    """The estimates at `steps` (`_AtStep` by step), going on from `resume[step]` where given;
    with `keep_chains`, where the chains ended (to be resumed)."""
    from circuits.analyses.llc_loss import chain_loss
    from circuits.pipeline.checkpoint_map import map_checkpoints

    def make():
        def one(model, step: int):
            params, loss_of = chain_loss(model, tokens, labels, loss, forward)
            start = (resume or {}).get(step)
            estimate, chains = sample_chains(loss_of, params, labels.numel(), settings, start)
            return _AtStep(step, estimate, chains if keep_chains else None)

        return one

    results, _ = map_checkpoints(run, steps, make, workers=workers)
    return {r.step: r for r in results}


@dataclass(frozen=True)
class _AtStep:
    step: int
    estimate: LLCEstimate
    chains: Chains | None


def with_llc(result, estimates: dict[int, LLCEstimate]):
    """A new `RunAnalysis`: `result` with `llc`, `llc_std`, `llc_chains` (chains that stayed
    in the basin), `llc_eps` (the run's SGLD step size), `llc_drift` (`LLCEstimate.drift`),
    `llc_steps` and `llc_burnin` (the chains' length) columns, NaN at checkpoints not
    estimated."""
    nan = float("nan")
    columns = {}
    for step in result.steps:
        estimate = estimates.get(step)
        columns[step] = {
            "llc": estimate.mean if estimate else nan,
            "llc_std": estimate.std if estimate else nan,
            "llc_eps": estimate.eps if estimate else nan,
            "llc_chains": len(estimate.per_chain) - estimate.diverged if estimate else nan,
            "llc_drift": estimate.drift if estimate else nan,
            "llc_steps": estimate.steps if estimate else nan,
            "llc_burnin": estimate.burnin if estimate else nan,
        }
    return result.with_columns(columns)


def llc_summary(rows) -> dict | None:
    """What `--llc` did, for the run's summary (None without LLC columns): how many checkpoints
    were estimated, at which ε and chain length, and at how many the chains were still
    climbing (`llc_drift` above the chain spread `llc_std`)."""
    estimated = [r for r in rows if math.isfinite(r.get("llc", math.nan))]
    if not estimated:
        return None
    return {
        "estimated": len(estimated),
        "eps": estimated[0]["llc_eps"],
        "steps": int(estimated[0]["llc_steps"]),
        "unsettled": sum(r["llc_drift"] > r["llc_std"] for r in estimated),
    }
