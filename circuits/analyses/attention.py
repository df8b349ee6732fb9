"""Attention of a checkpoint: where the answer position attends (per head, a table column
per key position), and the mean pattern over every query position (the circuitsvis view)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.analyses.activations import FinalActs

#: Inputs averaged by the circuitsvis view: a fixed random sample, the same at every checkpoint.
MAX_PATTERN_EXAMPLES = 1024


@dataclass(frozen=True)
class AttentionSummary:
    #: mean over examples of pattern[layer, :, head, last query, key_pos]
    final_attention: Float[Tensor, "layer head key_pos"]
    #: per head, spread of attention to each key over examples (0 = input-independent)
    final_attention_std: Float[Tensor, "layer head key_pos"]


def attention_summary(acts: FinalActs) -> AttentionSummary:
    pattern = acts.pattern.double()  # [layer, batch, head, key_pos]
    return AttentionSummary(
        final_attention=pattern.mean(dim=1), final_attention_std=pattern.std(dim=1)
    )


def attention_columns(summary: AttentionSummary, position_names: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    n_layers, n_heads, _ = summary.final_attention.shape
    for layer in range(n_layers):
        for head in range(n_heads):
            for pos, name in enumerate(position_names):
                out[f"attn/L{layer}H{head}->{name}"] = float(
                    summary.final_attention[layer, head, pos]
                )
    return out


def pattern_sample(
    tokens: Int[Tensor, "example pos"], max_examples: int = MAX_PATTERN_EXAMPLES
) -> Int[Tensor, "batch pos"]:
    """The inputs whose mean pattern the circuitsvis view shows (seeded, so every checkpoint
    and every analysis of the run averages the same ones)."""
    generator = torch.Generator().manual_seed(0)
    return tokens[torch.randperm(tokens.shape[0], generator=generator)[:max_examples]]


class _PatternsDone(Exception):
    """Raised by the last layer's pattern hook: nothing after it is needed."""


@torch.inference_mode()
def mean_attention_pattern(
    model, tokens: Int[Tensor, "batch pos"], batch_size: int = 4096
) -> Float[Tensor, "layer head query_pos key_pos"]:
    """Mean of `blocks.L.attn.hook_pattern` over the inputs, every query position (one input: its
    own pattern).

    The forward stops at the last layer's pattern (its value mixing, MLP and the unembedding
    are not needed), which makes it ~5x cheaper than a full `run_with_cache`.
    """
    n_layers = model.cfg.n_layers
    total: list[Tensor | None] = [None] * n_layers

    def keep(pattern: Tensor, hook, layer: int) -> None:
        part = pattern.double().sum(0)
        total[layer] = part if total[layer] is None else total[layer] + part
        if layer == n_layers - 1:
            raise _PatternsDone

    hooks = [
        (f"blocks.{layer}.attn.hook_pattern", partial(keep, layer=layer))
        for layer in range(n_layers)
    ]
    for start in range(0, tokens.shape[0], batch_size):
        try:
            model.run_with_hooks(tokens[start : start + batch_size], fwd_hooks=hooks)
        except _PatternsDone:
            pass
    return (torch.stack(total) / tokens.shape[0]).float()
