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

from circuits.activations import FinalActs


@dataclass(frozen=True)
class Attribution:
    names: list[str]
    #: mean over examples of each component's contribution to the centered correct logit
    mean: Float[Tensor, " component"]
    #: the model's mean centered correct logit (the sum the components explain)
    total: float


@torch.inference_mode()
def direct_logit_attribution(model, acts: FinalActs, labels: Int[Tensor, " batch"]) -> Attribution:
    n_layers = acts.z.shape[0]
    components: list[Tensor] = [acts.embed]
    names = ["embed"]
    for layer in range(n_layers):
        attn = model.blocks[layer].attn
        per_head = einops.einsum(acts.z[layer], attn.W_O, "batch head d_head, head d_head d_model -> head batch d_model")
        components += list(per_head)
        names += [f"L{layer}H{h}" for h in range(per_head.shape[0])]
        components.append(attn.b_O.expand_as(acts.embed))
        names.append(f"L{layer} attn bias")
        components.append(acts.mlp_out[layer])
        names.append(f"L{layer} MLP")
    stack = torch.stack(components).double()  # [component, batch, d_model]
    if model.cfg.normalization_type is not None:
        resid = acts.resid_final.double()
        centered = resid - resid.mean(-1, keepdim=True)
        scale = (centered.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()
        stack = (stack - stack.mean(-1, keepdim=True)) / scale * model.ln_final.w.double()
    W_U = model.W_U.double()
    centered_W_U = W_U - W_U.mean(dim=1, keepdim=True)
    direction = centered_W_U[:, labels].T  # [batch, d_model]
    contributions = einops.einsum(stack, direction, "component batch d_model, batch d_model -> component batch")
    logits = acts.logits.double()
    total = (logits.gather(1, labels[:, None]).squeeze(1) - logits.mean(1)).mean()
    return Attribution(names=names, mean=contributions.mean(dim=1), total=float(total))


def attribution_columns(result: Attribution) -> dict[str, float]:
    return {f"dla/{name}": float(value) for name, value in zip(result.names, result.mean)}
