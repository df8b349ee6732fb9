"""Direct logit attribution: how much each component writes to the correct answer's logit.

The residual stream at the answer position is a sum of component outputs: token and
position embeddings, each head's z·W_O, each attention bias b_O, each MLP's output. Each
is mapped through the final LayerNorm (frozen at the run's own scale; exact when there is
no LayerNorm) and the unembedding, and scored on the correct logit minus the mean logit
(softmax is shift-invariant). The contributions add up to the model's centered correct logit
(exactly without LayerNorm; up to the LayerNorm bias otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.analyses.activations import FinalActs


@dataclass(frozen=True)
class Attribution:
    names: list[str]
    #: mean over examples of each component's contribution to the centered correct logit
    mean: Float[Tensor, " component"]
    #: the model's mean centered correct logit (the sum the components explain)
    total: float


@torch.inference_mode()
def direct_logit_attribution(model, acts: FinalActs, labels: Int[Tensor, " batch"]) -> Attribution:
    """Mean contribution of each component to the centered correct logit.

    Each component is dotted with the per-example read-out direction (centered W_U column of
    the answer, through the final LayerNorm's frozen scale) instead of materializing a
    [component, batch, d_model] stack: products in float32, means in float64.
    """
    W_U = model.W_U.float()
    direction = (W_U - W_U.mean(dim=1, keepdim=True))[:, labels].T  # [batch, d_model]
    if model.cfg.normalization_type is not None:
        resid = acts.resid_final.float()
        centered = resid - resid.mean(-1, keepdim=True)
        scale = (centered.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
        direction = direction * model.ln_final.w.float() / scale
        # LayerNorm centers each component: (c - mean c)·d = c·(d - mean d).
        direction = direction - direction.mean(-1, keepdim=True)

    def read(x: Tensor) -> Tensor:
        return (x.float() * direction).sum(-1).double().mean()

    means: list[Tensor] = [read(acts.embed)]
    names = ["embed"]
    for layer in range(acts.z.shape[0]):
        attn = model.blocks[layer].attn
        # head h writes z_h·W_O[h]; its read-out is z_h·(W_O[h] d).
        per_head_direction = einops.einsum(
            direction, attn.W_O.float(), "batch d_model, head d_head d_model -> batch head d_head"
        )
        per_head = (acts.z[layer].float() * per_head_direction).sum(-1).double().mean(0)
        means += list(per_head)
        names += [f"L{layer}H{h}" for h in range(per_head.shape[0])]
        means.append(read(attn.b_O.expand_as(acts.embed)))
        names.append(f"L{layer} attn bias")
        means.append(read(acts.mlp_out[layer]))
        names.append(f"L{layer} MLP")
    logits = acts.logits.double()
    total = (logits.gather(1, labels[:, None]).squeeze(1) - logits.mean(1)).mean()
    return Attribution(names=names, mean=torch.stack(means), total=float(total))


def attribution_columns(result: Attribution) -> dict[str, float]:
    return {f"dla/{name}": float(value) for name, value in zip(result.names, result.mean)}
