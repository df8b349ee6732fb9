"""Loss, accuracy and weight-norm measurements shared by training and analysis."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.model import answer_logits

if TYPE_CHECKING:
    from interp.tasks.base import TaskData


def cross_entropy_f64(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]
) -> Tensor:
    """Mean cross-entropy computed in float64.

    float32 log-softmax saturates once the train loss reaches ~1e-7, which hides the
    late phase of grokking (ANCHORS §1); float64 keeps it measurable.
    """
    log_probs = logits.double().log_softmax(dim=-1)
    return -log_probs.gather(-1, labels[:, None]).mean()


def per_example_cross_entropy(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]
) -> tuple[Float[Tensor, " batch"], Int[Tensor, " batch"]]:
    """(cross-entropy of each example as float64, argmax of each row), in the logits' dtype.

    loss = (m − x_y) + log1p(Σ_{j ≠ argmax} exp(x_j − m)) with m = max_j x_j. Leaving the
    max term (exactly 1) out of the sum and taking log1p keeps every loss to ~1e-6 *relative*
    precision even in float32: a confidently right example whose loss is 1e-9 gets 1e-9, where
    logsumexp(x) − x_y in float32 rounds it to 0 (and in float64 to ~1e-15·|x| absolute).
    Labels of -1 (no answer) give NaN.
    """
    top, arg = logits.max(dim=-1)
    terms = (logits - top[:, None]).exp_()
    terms.scatter_(1, arg[:, None], 0.0)
    rest = terms.sum(dim=-1)
    correct_logit = logits.gather(-1, labels.clamp(min=0)[:, None]).squeeze(-1)
    nll = (top - correct_logit).double() + torch.log1p(rest.double())
    return nll.masked_fill_(labels < 0, float("nan")), arg


def stablemax_cross_entropy_f64(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"]
) -> Tensor:
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
    """Total and per-parameter sums of squared weights (falls during cleanup, ANCHORS §1).

    Columns are `sum_sq/{name}` for the names given: the trainer and the importer pass
    TransformerLens names (`interp.model.tl_named_parameters`: `sum_sq/blocks.0.attn.W_K`).
    """
    per_param = {name: float(p.detach().double().pow(2).sum()) for name, p in named_params.items()}
    return {
        "sum_sq_weights": sum(per_param.values()),
        **{f"sum_sq/{k}": v for k, v in per_param.items()},
    }


#: Splits smaller than this get a 95 % interval next to every accuracy they report.
SMALL_SPLIT = 1000


def wilson_interval(accuracy: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of an accuracy measured on `n` examples.

    Unlike the normal approximation it stays inside [0, 1] and is not zero-width at 0 or 1
    correct answers, which is where small held-out splits (e.g. a 19-example OOD split)
    usually sit.
    """
    if n <= 0:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def format_accuracy(accuracy: float, n: int | None) -> str:
    """`0.053 [0.015, 0.25] (n=19)` for a split under SMALL_SPLIT examples, else `0.953`."""
    if n is None or n >= SMALL_SPLIT:
        return f"{accuracy:.4g}"
    low, high = wilson_interval(accuracy, n)
    return f"{accuracy:.3f} [{low:.3f}, {high:.3f}] (n={n})"


@torch.inference_mode()
def evaluate(
    model, task: TaskData, device: torch.device, forward=answer_logits
) -> tuple[dict[str, float], dict[str, tuple[Tensor, Tensor]]]:
    """Loss (float64 cross-entropy) and accuracy on every split; `forward(model, tokens)` gives
    the logits the family's loss reads (default: the answer position), aligned with the
    flattened labels."""
    row: dict[str, float] = {}
    by_split: dict[str, tuple[Tensor, Tensor]] = {}
    for name in task.splits:
        tokens, labels = task.split(name)
        tokens, labels = tokens.to(device), labels.to(device).reshape(-1)
        logits = forward(model, tokens) if len(tokens) else torch.zeros(0, 1, device=device)
        by_split[name] = (logits, labels)
        row[f"{name}_loss"] = (
            float(cross_entropy_f64(logits, labels)) if len(tokens) else float("nan")
        )
        row[f"{name}_acc"] = accuracy(logits, labels)
    return row, by_split
