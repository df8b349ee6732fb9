"""The local learning coefficient (LLC) of a checkpoint, estimated with SGLD (Lau et al.
2023; the developmental-interpretability estimator that devinterp implements).

    λ̂(w*) = nβ · (E_w[L_n(w)] − L_n(w*)),   β = 1 / log n,

where the expectation is over the tempered, localized posterior
p(w) ∝ exp(−nβ L_n(w) − γ/2 ‖w − w*‖²), sampled by SGLD:

    w ← w − (ε/2) (nβ ∇L_n(w) + γ (w − w*)) + N(0, ε).

L_n is the training loss on all n training examples (full batch: the quantity measured,
L(w) − L(w*), is of order λ/(nβ), far below minibatch noise). The first `burnin` steps of
each chain are discarded, the rest averaged; the estimate is the mean over `chains` seeded
chains, reported with their standard deviation. For a regular model (a non-degenerate
minimum) λ = d/2 with d the number of identifiable parameters (`tests/test_llc.py`); a
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


def estimate_llc(
    loss_fn: Callable[[dict[str, Tensor]], Tensor],
    params: dict[str, Tensor],
    n: int,
    settings: LLCSettings = LLCSettings(),
) -> LLCEstimate:
    """The LLC at `params` (w*) of `loss_fn(params) -> mean loss over the n examples`."""
    n_beta = n / math.log(n)
    center = {k: v.detach().clone() for k, v in params.items()}
    with torch.no_grad():
        init_loss = float(loss_fn(center))
    generator = torch.Generator().manual_seed(settings.seed)
    eps, gamma = settings.lr, settings.gamma
    per_chain, traces, diverged = [], [], 0
    for _ in range(settings.chains):
        w = {k: v.clone().requires_grad_(True) for k, v in center.items()}
        trace: list[float] = []
        for _step in range(settings.steps):
            loss = loss_fn(w)
            grads = torch.autograd.grad(loss, list(w.values()))
            trace.append(float(loss.detach()))
            with torch.no_grad():
                for (name, value), grad in zip(w.items(), grads):
                    drift = n_beta * grad + gamma * (value - center[name])
                    noise = torch.randn(value.shape, generator=generator, dtype=value.dtype)
                    value.add_(-0.5 * eps * drift + math.sqrt(eps) * noise)
        kept = trace[settings.burnin :]
        value = n_beta * (sum(kept) / len(kept) - init_loss)
        if not math.isfinite(value) or escaped(trace, init_loss, settings.escape):
            diverged += 1
            value = float("nan")
        per_chain.append(value)
        traces.append(trace)
    finite = [v for v in per_chain if math.isfinite(v)]
    mean = sum(finite) / len(finite) if finite else float("nan")
    std = (
        math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
        if len(finite) > 1
        else float("nan")
    )
    return LLCEstimate(mean, std, per_chain, traces, init_loss, diverged, settings.lr)


def escaped(trace: list[float], init_loss: float, escape: float) -> bool:
    """Whether a chain left the basin of w*: a non-finite loss, or one more than `escape`
    above L(w*) at any step."""
    return not all(math.isfinite(v) and v - init_loss <= escape for v in trace)


def model_llc(
    model, tokens: Tensor, labels: Tensor, loss, forward, settings: LLCSettings = LLCSettings()
) -> LLCEstimate:
    """The LLC of a TransformerBridge checkpoint on its training examples: `forward(model,
    tokens)` gives the logits the family's training `loss(logits, labels)` reads (tied
    weights stay tied: `torch.func.functional_call`). n counts the labels: one per
    sequence for answer-position families, one per position for next-token families (the
    loss is their mean)."""
    import copy

    from torch import nn
    from torch.func import functional_call

    from interp.model.build import native_model

    # functional_call does not restore every alias of the bridge's wrapped parameters: the
    # chains run on a copy, so the checkpoint's own model is never touched.
    model = copy.deepcopy(model)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.native = native_model(model)

        def forward(self, inputs: Tensor) -> Tensor:
            return forward(model, inputs)

    wrapped = Wrapped()
    params = {k: v.detach() for k, v in wrapped.named_parameters()}

    def loss_fn(values: dict[str, Tensor]) -> Tensor:
        return loss(functional_call(wrapped, values, (tokens,)), labels)

    return estimate_llc(loss_fn, params, labels.numel(), settings)


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
    training loss; `workers` checkpoints at a time (`circuits.pipeline.checkpoint_map`). For walks
    in
    fresh mode the training split is held-out walks of the training distribution (the walks
    trained on are never stored): the LLC of the population loss, estimated on a sample."""
    from circuits.pipeline.figure_steps import pick_steps
    from circuits.viz.figures import phase_steps

    family = result.family
    task = run.task
    index = task.train_index
    per_sequence = max(1, task.labels[index[:1]].numel())
    keep = max(1, MAX_EXAMPLES // per_sequence)
    if len(index) > keep:
        generator = torch.Generator().manual_seed(settings.seed)
        index = index[torch.randperm(len(index), generator=generator)[:keep]]
    tokens, labels = task.tokens[index], task.labels[index].reshape(-1)  # as the trainer reads them
    loss = family.training_loss(run.config.train.loss)
    steps = pick_steps(result.steps, MAX_CHECKPOINTS, phase_steps(result))
    data = (tokens, labels, loss, family.forward)
    escape = math.log(run.config.task.d_vocab_out)
    ladder = [settings.lr * STEP_FACTOR**i for i in range(LADDER)]
    for eps in ladder:  # the probe: one short chain per checkpoint, largest ε first
        probe = replace(settings, lr=eps, escape=escape, chains=1, steps=settings.burnin, burnin=0)
        if all(e.diverged == 0 for e in _estimates(run, steps, probe, *data, workers).values()):
            break
    final = replace(settings, lr=eps, escape=escape)
    return _estimates(run, steps, final, *data, workers)


#: `--llc` tries ε = settings.lr × STEP_FACTOR^i, i < LADDER, and keeps the largest at which
#: a probe chain (one chain, `burnin` steps) at every estimated checkpoint stays in its basin
#: (`escaped`); the run's checkpoints are then all estimated with that one ε, so they stay
#: comparable (the LLC's scale depends on ε: compare within a run).
STEP_FACTOR = 1 / 3
LADDER = 4


def _estimates(run, steps, settings, tokens, labels, loss, forward, workers):
    from circuits.pipeline.checkpoint_map import map_checkpoints

    def make():
        def one(model, step: int):
            return _AtStep(step, model_llc(model, tokens, labels, loss, forward, settings))

        return one

    results, _ = map_checkpoints(run, steps, make, workers=workers)
    return {r.step: r.estimate for r in results}


@dataclass(frozen=True)
class _AtStep:
    step: int
    estimate: LLCEstimate


def with_llc(result, estimates: dict[int, LLCEstimate]):
    """A new `RunAnalysis`: `result` with `llc`, `llc_std`, `llc_chains` (chains that stayed
    in the basin) and `llc_eps` (the run's SGLD step size) columns, NaN at checkpoints not
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
        }
    return result.with_columns(columns)
