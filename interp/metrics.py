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


def accuracy(logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]) -> float:
    if labels.numel() == 0:
        return float("nan")
    return (logits.argmax(dim=-1) == labels).double().mean().item()


def sum_squared_weights(named_params: dict[str, Tensor]) -> dict[str, float]:
    """Total and per-parameter sums of squared weights (falls during cleanup, ANCHORS §1)."""
    per_param = {name: float(p.detach().double().pow(2).sum()) for name, p in named_params.items()}
    return {"sum_sq_weights": sum(per_param.values()), **{f"sum_sq/{k}": v for k, v in per_param.items()}}
