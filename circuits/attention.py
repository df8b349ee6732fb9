"""Where the answer position attends: per head, the mean attention from the last position to each key position."""

from __future__ import annotations

from dataclasses import dataclass

from jaxtyping import Float
from torch import Tensor

from circuits.activations import FinalActs


@dataclass(frozen=True)
class AttentionSummary:
    #: mean over examples of pattern[layer, :, head, last query, key_pos]
    final_attention: Float[Tensor, "layer head key_pos"]
    #: per head, spread of attention to each key over examples (0 = input-independent)
    final_attention_std: Float[Tensor, "layer head key_pos"]


def attention_summary(acts: FinalActs) -> AttentionSummary:
    pattern = acts.pattern.double()  # [layer, batch, head, key_pos]
    return AttentionSummary(final_attention=pattern.mean(dim=1), final_attention_std=pattern.std(dim=1))


def attention_columns(summary: AttentionSummary, position_names: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    n_layers, n_heads, _ = summary.final_attention.shape
    for layer in range(n_layers):
        for head in range(n_heads):
            for pos, name in enumerate(position_names):
                out[f"attn/L{layer}H{head}->{name}"] = float(summary.final_attention[layer, head, pos])
    return out
