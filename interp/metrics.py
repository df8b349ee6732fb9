"""Loss, accuracy and weight-norm measurements shared by training and analysis."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor


def cross_entropy_f64(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> Tensor:
    """Mean cross-entropy computed in float64.

    float32 log-softmax saturates once the train loss reaches ~1e-7, which hides the
    late phase of grokking (ANCHORS §1); float64 keeps it measurable.
    """
    log_probs = logits.double().log_softmax(dim=-1)
    return -log_probs.gather(-1, labels[:, None]).mean()


def stablemax_cross_entropy_f64(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> Tensor:
    """Mean StableMax cross-entropy in float64 (Prieto et al. 2025).

    StableMax(x)_i = s(x_i) / Σ_j s(x_j) with s(x) = x + 1 for x >= 0 and 1 / (1 - x) for
    x < 0: it grows linearly, not exponentially, so the loss cannot collapse to exactly 0
    ("softmax collapse") and the gradient never vanishes in floating point.
    """
    x = logits.double()
    s = torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))
    probs = s / s.sum(dim=-1, keepdim=True)
    return -probs.gather(-1, labels[:, None]).log().mean()


def accuracy(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> float:
    if labels.numel() == 0:
        return float("nan")
    return (logits.argmax(dim=-1) == labels).double().mean().item()


def sum_squared_weights(named_params: dict[str, Tensor]) -> dict[str, float]:
    """Total and per-parameter sums of squared weights (falls during cleanup, ANCHORS §1)."""
    per_param = {name: float(p.detach().double().pow(2).sum()) for name, p in named_params.items()}
    return {"sum_sq_weights": sum(per_param.values()), **{f"sum_sq/{k}": v for k, v in per_param.items()}}
