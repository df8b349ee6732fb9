"""Logit lens: read every layer's residual stream through the final norm and unembedding.

Layer index `l` is the residual stream after `l` blocks: 0 = the embeddings
(`blocks.0.hook_resid_pre`), `l >= 1` = `blocks.{l-1}.hook_resid_post`; the last index is
what the model itself unembeds. A target's rank is counted among its *candidates* only
(entities for a bridge or an answer entity, value tokens for an attribute value), so the
input token at that position (which tied embeddings make rank first at layer 0) does not
push it down. MRR = mean of 1 / (rank + 1), rank 0-based (Wang et al. 2024).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.model import native_model


def resid_hook_names(n_layers: int) -> list[str]:
    """Hook name of residual-stream layer index 0..n_layers (see the module docstring)."""
    return ["blocks.0.hook_resid_pre"] + [
        f"blocks.{layer}.hook_resid_post" for layer in range(n_layers)
    ]


@dataclass(frozen=True)
class LensTarget:
    """Where to look and what to look for: `position`, per-example target token, candidate
    tokens."""

    position: int
    target: Int[Tensor, " batch"]
    candidates: Int[Tensor, " candidate"]


@dataclass(frozen=True)
class LogitLensResult:
    names: tuple[str, ...]
    #: rank of each target among its candidates, 0 = top
    rank: Int[Tensor, "target layer batch"]
    #: mean reciprocal rank, 1 / (rank + 1) averaged over the batch
    mrr: Float[Tensor, "target layer"]
    #: the position each target is read at
    positions: tuple[int, ...] = ()

    def mrr_of(self, name: str) -> Float[Tensor, " layer"]:
        return self.mrr[self.names.index(name)]


def residual_stack(
    model, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "layer batch pos d_model"]:
    """Residual stream at every layer index 0..n_layers."""
    names = resid_hook_names(model.cfg.n_layers)
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    return torch.stack([cache[name] for name in names])


def unembed_resid(model, resid: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_vocab_out"]:
    """Final norm + unembedding, the model's own (`ln_final`, `W_U`)."""
    native = native_model(model)
    return native.head(native.ln_out(resid))


@torch.inference_mode()
def logit_lens(
    model, tokens: Int[Tensor, "batch pos"], targets: dict[str, LensTarget]
) -> LogitLensResult:
    stack = residual_stack(model, tokens)
    ranks = []
    for target in targets.values():
        logits = unembed_resid(model, stack[:, :, target.position])  # [layer, batch, d_vocab_out]
        cand = logits[..., target.candidates]
        # position of the target inside the candidate list, per example
        where = (target.candidates[None, :] == target.target[:, None]).float().argmax(dim=1)
        target_logit = cand.gather(-1, where[None, :, None].expand(cand.shape[0], -1, 1))
        ranks.append((cand > target_logit).sum(dim=-1))
    rank = torch.stack(ranks)
    return LogitLensResult(
        tuple(targets),
        rank,
        (1.0 / (rank.double() + 1)).mean(dim=-1),
        tuple(t.position for t in targets.values()),
    )
