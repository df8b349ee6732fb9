"""The next-token families' fast forward: logits at every position from the bridge's own
parameters (see `interp.model`)."""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.model.build import native_model
from interp.model.forward import (
    mlp_hidden,
    mlp_output,
    mlp_parts,
    supports_fast_path,
    unembed,
    unwrapped,
)


def sequence_logits(
    bridge, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos d_vocab_out"]:
    """Logits at every position (the next-token families' forward), from the bridge's own
    parameters without its hook wrappers: Q, K and V in one matmul, causal attention through
    `F.scaled_dot_product_attention`.

    Equal (to float rounding) to `bridge(tokens)`; no hooks fire. Falls back to the native
    forward for architectures it does not cover (rotary, GQA, soft caps, gated MLPs). The
    modules it reads are looked up once per model (`_plan`): the per-call lookups through
    the bridge's wrappers cost ~1 % of a small model's training step.
    """
    native = native_model(bridge)
    plan = _plan(native)
    if plan is None:
        return native(tokens)
    embed, pos, blocks, head = plan
    batch, seq = tokens.shape
    x = embed.weight.index_select(0, tokens.reshape(-1)).view(batch, seq, -1) + pos.weight[:seq]
    for ln1, attn, q, k, v, o, block, mlp in blocks:
        weight = torch.cat([q.weight, k.weight, v.weight])
        bias = None if q.bias is None else torch.cat([q.bias, k.bias, v.bias])
        qkv = F.linear(ln1(x), weight, bias).view(batch, seq, 3, attn.n_heads, -1)
        q_, k_, v_ = qkv.permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(q_, k_, v_, is_causal=True, scale=1.0 / attn.scale)
        x = x + F.linear(z.transpose(1, 2).reshape(batch, seq, -1), o.weight, o.bias)
        if mlp is not None:
            x = x + mlp_output(block, mlp_hidden(block, x, mlp), mlp)
    return unembed(native, x, head)


_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _plan(native: nn.Module):
    """The raw modules `sequence_logits` reads, per native model (None: not covered). Modules,
    not tensors, are kept, so updated or swapped parameters (`functional_call`) are seen."""
    if native in _PLANS:
        return _PLANS[native]
    plan = None
    if supports_fast_path(native) and not native.cfg.gated_mlp:
        blocks = []
        for block in native.layers:
            block = unwrapped(block)
            attn = unwrapped(block.attn)
            qkvo = tuple(unwrapped(getattr(attn, name)) for name in ("q", "k", "v", "o"))
            mlp = None if native.cfg.attn_only else mlp_parts(block)
            blocks.append((unwrapped(block.ln1), attn, *qkvo, block, mlp))
        head = (unwrapped(native.ln_out), unwrapped(native.head))
        plan = (unwrapped(native.tok_embed), unwrapped(native.pos), blocks, head)
    _PLANS[native] = plan
    return plan
