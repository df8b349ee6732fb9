"""Hook conformance on our TransformerBridge models: every hook the analyses read fires with
the expected shape, editing it changes the output, gradients reach it, and edits land where
the hook's name says (open TransformerLens issues report bridge hooks that fire at the wrong
place or whose edits are ignored: #1317, #1526, #1680). Two architectures: the modular
family's (one layer, no LayerNorm) and the entity families' (pre-LN, tied embeddings)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from circuits.families.entity.two_hop import ENTITY_MODEL
from interp.model import build_model
from interp.presets import PRESETS

SMALL = dict(n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=3)
#: The families' own architectures at a test size.
ARCHITECTURES = {
    "modular": replace(PRESETS["demo"].model, **{**SMALL, "n_layers": 1}),
    "entity": replace(ENTITY_MODEL, **SMALL),
}
D_VOCAB, N_CTX = 12, 4


def hooks_used(n_layers: int) -> dict[str, tuple[int, ...]]:
    """The hooks `circuits` reads (activations, patching, logit lens), with their shapes
    after the batch and position axes."""
    out = {"hook_embed": (16,), "hook_pos_embed": (16,)}
    for layer in range(n_layers):
        out.update(
            {
                f"blocks.{layer}.hook_resid_pre": (16,),
                f"blocks.{layer}.hook_resid_post": (16,),
                f"blocks.{layer}.attn.hook_z": (2, 8),
                f"blocks.{layer}.hook_mlp_out": (16,),
                f"blocks.{layer}.mlp.hook_post": (32,),
            }
        )
    return out


@pytest.fixture(params=sorted(ARCHITECTURES))
def model(request):
    torch.manual_seed(0)
    return build_model(
        ARCHITECTURES[request.param], d_vocab=D_VOCAB, d_vocab_out=D_VOCAB, n_ctx=N_CTX
    )


def tokens():
    return torch.randint(0, D_VOCAB, (5, N_CTX), generator=torch.Generator().manual_seed(1))


def test_every_hook_fires_with_its_shape_and_the_pattern_is_a_distribution(model):
    _, cache = model.run_with_cache(tokens())
    for name, shape in hooks_used(model.cfg.n_layers).items():
        assert name in cache, name
        assert tuple(cache[name].shape) == (5, N_CTX, *shape), name
    for layer in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]  # [batch, head, query, key]
        assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-5)
        assert (pattern.triu(1) == 0).all()  # causal


def test_editing_a_hook_changes_the_output_and_gradients_reach_it(model):
    clean = model(tokens()).detach()
    for name in hooks_used(model.cfg.n_layers):
        noise = torch.Generator().manual_seed(2)

        def edit(act, hook):
            return act + torch.randn(act.shape, generator=noise) * (act.std() + 1e-3)

        edited = model.run_with_hooks(tokens(), fwd_hooks=[(name, edit)]).detach()
        assert (edited - clean).abs().max() > 1e-4, f"editing {name} changed nothing"

        kept = {}

        def keep(act, hook):
            # Return the tensor whose gradient we read: on the bridge, hook_z hands the hook a
            # reshaped view and, when the hook returns None, goes on with the original, so
            # `retain_grad` on the view sees no gradient (measured on TransformerLens 4.3.0).
            # Gradient-based attribution at hook_z must therefore return its tensor.
            act = act.clone()
            act.retain_grad()
            kept["act"] = act
            return act

        model.zero_grad(set_to_none=True)
        model.run_with_hooks(tokens(), fwd_hooks=[(name, keep)]).sum().backward()
        grad = kept["act"].grad
        assert grad is not None and grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_edits_land_where_the_hook_names_say(model):
    """Zeroing hook_z leaves the attention output equal to its bias; replacing a block's
    resid_pre with the previous block's resid_post is a no-op; the last resid_post through
    the final LayerNorm and unembedding gives the logits."""
    seen = {}

    def zero(act, hook):
        return act * 0

    def grab(act, hook):  # (hook.name is the bridge's canonical name, not the alias)
        seen["attn_out"] = act.detach().clone()

    model.run_with_hooks(
        tokens(), fwd_hooks=[("blocks.0.attn.hook_z", zero), ("blocks.0.hook_attn_out", grab)]
    )
    assert torch.allclose(seen["attn_out"], model.b_O[0].expand(5, N_CTX, -1))

    logits, cache = model.run_with_cache(tokens())
    last = model.cfg.n_layers - 1
    if model.cfg.n_layers > 1:
        assert torch.equal(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"])
    final = cache[f"blocks.{last}.hook_resid_post"]
    if model.cfg.normalization_type:
        final = model.ln_final(final)
    assert torch.allclose(final @ model.W_U + model.b_U, logits, atol=1e-4)
