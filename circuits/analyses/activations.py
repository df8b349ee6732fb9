"""Final-position activations of a checkpoint over a batch, gathered once for all analyses.

Every modular analysis reads the answer position only; gathering those tensors in one
forward pass keeps each analysis a pure function of this record. The pass is
`interp.model.answer_activations` (the answer-position shortcut, no hooks: ~10x faster on
p² inputs) where the architecture allows, else TransformerLens `run_with_cache` with a
names filter (`final_position_activations_hooked`, also the reference the tests compare to).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor


@dataclass(frozen=True)
class FinalActs:
    """Activations at the last position. Shapes use TransformerLens's axis names."""

    logits: Float[Tensor, "batch d_vocab_out"]
    embed: Float[Tensor, "batch d_model"]  # hook_embed + hook_pos_embed
    pattern: Float[Tensor, "layer batch head key_pos"]  # blocks.L.attn.hook_pattern, last query
    mlp_post: Float[Tensor, "batch d_mlp"]  # last layer's blocks.L.mlp.hook_post
    # Read only by direct logit attribution; None when gathered with attribution=False.
    z: Float[Tensor, "layer batch head d_head"] | None = None  # blocks.L.attn.hook_z
    mlp_out: Float[Tensor, "layer batch d_model"] | None = None  # blocks.L.hook_mlp_out
    resid_final: Float[Tensor, "batch d_model"] | None = None  # blocks.{-1}.hook_resid_post

    def select(self, index: Int[Tensor, " index"]) -> FinalActs:
        """The same record for the examples `index` only."""

        def pick(x: Tensor | None, axis: int = 0) -> Tensor | None:
            return None if x is None else x.index_select(axis, index)

        return FinalActs(
            logits=pick(self.logits),
            embed=pick(self.embed),
            pattern=pick(self.pattern, 1),
            mlp_post=pick(self.mlp_post),
            z=pick(self.z, 1),
            mlp_out=pick(self.mlp_out, 1),
            resid_final=pick(self.resid_final),
        )


def hook_names(n_layers: int) -> list[str]:
    names = [
        "hook_embed",
        "hook_pos_embed",
        f"blocks.{n_layers - 1}.hook_resid_post",
        f"blocks.{n_layers - 1}.mlp.hook_post",
    ]
    for layer in range(n_layers):
        names += [
            f"blocks.{layer}.attn.hook_z",
            f"blocks.{layer}.attn.hook_pattern",
            f"blocks.{layer}.hook_mlp_out",
        ]
    return names


@torch.inference_mode()
def final_position_activations(
    model, tokens: Int[Tensor, "batch pos"], batch_size: int = 8192, *, attribution: bool = True
) -> FinalActs:
    """`attribution=False` may leave `z`, `mlp_out` and `resid_final` out (DLA's inputs only)."""
    from interp.model import answer_activations, supports_answer_activations

    if not supports_answer_activations(model):
        return final_position_activations_hooked(model, tokens, batch_size)
    # No per-position cache is kept on this path, so it takes larger chunks (one for p ≤ 181).
    chunk = max(batch_size, 32_768)
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, tokens.shape[0], chunk):
        for name, value in answer_activations(
            model, tokens[start : start + chunk], attribution=attribution
        ).items():
            parts.setdefault(name, []).append(value)
    batch_axis = {"z": 1, "pattern": 1, "mlp_out": 1}
    return FinalActs(
        **{
            k: v[0] if len(v) == 1 else torch.cat(v, dim=batch_axis.get(k, 0))
            for k, v in parts.items()
        }
    )


@torch.inference_mode()
def final_position_activations_hooked(
    model, tokens: Int[Tensor, "batch pos"], batch_size: int = 8192, *, attribution: bool = True
) -> FinalActs:
    """The same record from TransformerLens hooks (`run_with_cache`): the reference path
    (always complete; `attribution` is accepted for a drop-in signature)."""
    n_layers = model.cfg.n_layers
    wanted = set(hook_names(n_layers))
    parts: dict[str, list[Tensor]] = {}
    for start in range(0, tokens.shape[0], batch_size):
        logits, cache = model.run_with_cache(
            tokens[start : start + batch_size], names_filter=lambda n: n in wanted
        )
        parts.setdefault("logits", []).append(logits[:, -1])
        parts.setdefault("embed", []).append(
            cache["hook_embed"][:, -1] + cache["hook_pos_embed"][:, -1]
        )
        parts.setdefault("z", []).append(
            torch.stack([cache[f"blocks.{layer}.attn.hook_z"][:, -1] for layer in range(n_layers)])
        )
        parts.setdefault("pattern", []).append(
            torch.stack(
                [cache[f"blocks.{layer}.attn.hook_pattern"][:, :, -1] for layer in range(n_layers)]
            )
        )
        parts.setdefault("mlp_out", []).append(
            torch.stack([cache[f"blocks.{layer}.hook_mlp_out"][:, -1] for layer in range(n_layers)])
        )
        parts.setdefault("mlp_post", []).append(
            cache[f"blocks.{n_layers - 1}.mlp.hook_post"][:, -1]
        )
        parts.setdefault("resid_final", []).append(
            cache[f"blocks.{n_layers - 1}.hook_resid_post"][:, -1]
        )
    batch_axis = {"z": 1, "pattern": 1, "mlp_out": 1}
    return FinalActs(**{k: torch.cat(v, dim=batch_axis.get(k, 0)) for k, v in parts.items()})
