"""Causal tracing by activation patching (Meng et al. 2022; Wang et al. 2024 §causal tracing).

Run a counterfactual input (one token swapped for another of the same type, so that the
answer changes), cache its residual stream, and copy its state at one (layer, position)
into the clean run through a TransformerLens hook. If the answer at the last position
follows, that state carries what the answer depends on. Layer indices are those of
`probes.logit_lens.resid_hook_names` (0 = embeddings, l = after block l-1).

`changed` = fraction of examples whose top-1 answer differs from the clean run's;
`transferred` = fraction whose top-1 answer becomes the counterfactual's expected answer.

`mediation` is the continuous version for one position: with the logit difference
M = logit[clean answer] - logit[counterfactual answer] at the last position, the total
effect of the swap is TE = M(clean) - M(counterfactual run) and the indirect effect through
(layer, position) is IE = M(clean) - M(clean run patched there); the mediated fraction is
sum(IE) / sum(TE) over the examples (causal mediation analysis, Vig et al. 2020).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Float, Int
from torch import Tensor

from probes.logit_lens import resid_hook_names, residual_stack


@dataclass(frozen=True)
class PatchingResult:
    changed: Float[Tensor, "layer pos"]
    transferred: Float[Tensor, "layer pos"]
    n_examples: int


def _patch_position(resid: Tensor, hook, *, source: Tensor, position: int) -> Tensor:
    resid = resid.clone()
    resid[:, position] = source
    return resid


def patched_logits(
    model,
    clean_tokens: Int[Tensor, "batch pos"],
    source: Float[Tensor, "batch d_model"],
    layer: int,
    position: int,
) -> Float[Tensor, "batch d_vocab_out"]:
    """Last-position logits of the clean run with `source` written into (layer, position)."""
    hook_name = resid_hook_names(model.cfg.n_layers)[layer]
    hook = partial(_patch_position, source=source, position=position)
    with model.hooks(fwd_hooks=[(hook_name, hook)]):
        return model(clean_tokens)[:, -1]


@dataclass(frozen=True)
class MediationResult:
    #: sum over examples of the indirect effect through (layer, position), per layer
    indirect: Float[Tensor, " layer"]
    #: the same with each example's effect taken in absolute value (a change of either sign)
    indirect_abs: Float[Tensor, " layer"]
    #: sum over examples of the total effect of the swap
    total: float
    #: fraction of examples whose top-1 answer becomes the counterfactual answer, per layer
    transferred: Float[Tensor, " layer"]
    n_examples: int
    #: standard error of `indirect` (its sum over examples), from the per-example spread
    indirect_se: Float[Tensor, " layer"] | None = None


@torch.inference_mode()
def mediation(
    model,
    clean_tokens: Int[Tensor, "batch pos"],
    counterfactual_tokens: Int[Tensor, "batch pos"],
    clean_answer: Int[Tensor, " batch"],
    counterfactual_answer: Int[Tensor, " batch"],
    position: int,
    metric: Callable[[Tensor], Tensor] | None = None,
) -> MediationResult:
    """Indirect effect of the swap through the residual stream at `position`, per layer.

    `metric(last_position_logits) -> [batch]` is what the effects are measured on; by
    default the logit difference between the clean and the counterfactual answer.
    """

    def logit_diff(logits: Tensor) -> Tensor:
        if metric is not None:
            return metric(logits).double()
        return (
            (
                logits.gather(1, clean_answer[:, None])
                - logits.gather(1, counterfactual_answer[:, None])
            )
            .squeeze(1)
            .double()
        )

    clean = logit_diff(model(clean_tokens)[:, -1])
    total = float((clean - logit_diff(model(counterfactual_tokens)[:, -1])).sum())
    stack = residual_stack(model, counterfactual_tokens)
    indirect, indirect_abs, transferred, indirect_se = [], [], [], []
    for layer in range(model.cfg.n_layers + 1):
        patched = patched_logits(model, clean_tokens, stack[layer, :, position], layer, position)
        effect = clean - logit_diff(patched)
        indirect.append(float(effect.sum()))
        indirect_abs.append(float(effect.abs().sum()))
        indirect_se.append(float(effect.std() * len(effect) ** 0.5) if len(effect) > 1 else 0.0)
        transferred.append(float((patched.argmax(dim=-1) == counterfactual_answer).double().mean()))
    return MediationResult(
        torch.tensor(indirect),
        torch.tensor(indirect_abs),
        total,
        torch.tensor(transferred),
        int(clean_tokens.shape[0]),
        torch.tensor(indirect_se),
    )


@torch.inference_mode()
def causal_tracing(
    model,
    clean_tokens: Int[Tensor, "batch pos"],
    counterfactual_tokens: Int[Tensor, "batch pos"],
    counterfactual_answer: Int[Tensor, " batch"],
    *,
    positions: list[int] | None = None,
    layers: list[int] | None = None,
) -> PatchingResult:
    """Patch the counterfactual state at every (layer, position) into the clean run."""
    n_ctx = clean_tokens.shape[1]
    positions = list(range(n_ctx)) if positions is None else positions
    layers = list(range(model.cfg.n_layers + 1)) if layers is None else layers
    clean_top = model(clean_tokens)[:, -1].argmax(dim=-1)
    stack = residual_stack(model, counterfactual_tokens)  # [layer, batch, pos, d_model]
    changed = torch.full((model.cfg.n_layers + 1, n_ctx), float("nan"))
    transferred = torch.full_like(changed, float("nan"))
    for layer in layers:
        for position in positions:
            top = patched_logits(
                model, clean_tokens, stack[layer, :, position], layer, position
            ).argmax(dim=-1)
            changed[layer, position] = (top != clean_top).float().mean()
            transferred[layer, position] = (top == counterfactual_answer).float().mean()
    return PatchingResult(changed, transferred, int(clean_tokens.shape[0]))
