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
    vmapped_logits,
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


def stacked_sequence_logits(
    bridge, stacked: dict[str, Tensor], tokens: Int[Tensor, "member batch pos"]
) -> Float[Tensor, "member batch pos d_vocab_out"]:
    """`sequence_logits` of K models of `bridge`'s shape at once (ensemble members trained
    together, `interp.stacked`). `stacked[name]` holds `parameters(bridge)[name]` of every
    member on a leading member axis; the bridge's own parameters are not read, its buffers
    (the unembedding's fixed bias) are shared; gradients flow into `stacked`.

    The member axis is a batch axis of every op: batched matmuls (`torch.baddbmm`, the same
    GEMM per member as `F.linear`), one SDPA call over all members' sequences, LayerNorm per
    member with its own affine (a broadcast affine after one stacked LayerNorm would sum the
    weight's gradient in another order). On CPU each member's logits and gradients are
    bit-identical to `sequence_logits` of that member alone (tests/interp/test_stacked.py).
    Architectures outside the fast path run `sequence_logits` under `torch.func.vmap`.
    """
    native = native_model(bridge)
    plan = _plan(native)
    if plan is None or not _norms_covered(plan):
        return vmapped_logits(sequence_logits, bridge, stacked, tokens)
    names = {id(param): name for name, param in native.named_parameters()}

    def member(module: nn.Module, attr: str = "weight") -> Tensor | None:
        """`module.attr` of every member [member, ...], or the shared tensor (a buffer)."""
        tensor = getattr(module, attr)
        return stacked[names[id(tensor)]] if id(tensor) in names else tensor

    def linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # bias [member, out] (or a shared [out]) broadcast over the rows, as F.linear's addmm
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(-2), x, weight.transpose(1, 2))

    def norm(module: nn.Module, x: Tensor) -> Tensor:
        if isinstance(module, nn.Identity):
            return x
        weight, bias = member(module), member(module, "bias")
        shape, eps = module.normalized_shape, module.eps
        return torch.stack(
            [
                F.layer_norm(x_i, shape, w_i, b_i, eps)
                for x_i, w_i, b_i in zip(x.unbind(0), weight.unbind(0), bias.unbind(0))
            ]
        )

    embed, pos, blocks, (ln_out, head) = plan
    n_members, batch, seq = tokens.shape
    table = member(embed)  # [member, d_vocab, d_model]
    offsets = torch.arange(n_members, device=tokens.device).view(-1, 1, 1) * table.shape[1]
    x = table.flatten(0, 1).index_select(0, (tokens + offsets).reshape(-1))
    x = (x.view(n_members, batch, seq, -1) + member(pos)[:, None, :seq]).flatten(1, 2)
    for ln1, attn, q, k, v, o, _, mlp in blocks:
        weight = torch.cat([member(q), member(k), member(v)], dim=1)
        bias = None if q.bias is None else torch.cat([member(m, "bias") for m in (q, k, v)], 1)
        qkv = linear(norm(ln1, x), weight, bias).view(n_members * batch, seq, 3, attn.n_heads, -1)
        q_, k_, v_ = qkv.permute(2, 0, 3, 1, 4)
        z = F.scaled_dot_product_attention(q_, k_, v_, is_causal=True, scale=1.0 / attn.scale)
        z = z.transpose(1, 2).reshape(n_members, batch * seq, -1)
        x = x + linear(z, member(o), None if o.bias is None else member(o, "bias"))
        if mlp is not None:
            ln2, fc_in, act, own_ln, fc_out = mlp
            hidden = act(linear(norm(ln2, x), member(fc_in), member(fc_in, "bias")))
            if own_ln is not None:
                hidden = norm(own_ln, hidden)
            x = x + linear(hidden, member(fc_out), member(fc_out, "bias"))
    logits = linear(norm(ln_out, x), member(head), member(head, "bias"))
    return logits.view(n_members, batch, seq, -1)


def _norms_covered(plan) -> bool:
    """Whether every normalization of the plan is a LayerNorm with weight and bias, or none."""
    _, _, blocks, (ln_out, _) = plan
    norms = [ln_out] + [b[0] for b in blocks]
    norms += [m for b in blocks if b[-1] is not None for m in (b[-1][0], b[-1][3]) if m is not None]
    return all(
        isinstance(m, nn.Identity)
        or (isinstance(m, nn.LayerNorm) and m.weight is not None and m.bias is not None)
        for m in norms
    )


class CachedDecoder:
    """Next-token logits one position at a time, with a key/value cache: `step(tokens)` feeds
    the next token of every sequence and returns the logits at that position, equal (to float
    rounding) to `sequence_logits` of the whole prefix at its last position, at O(prefix)
    cost per position instead of O(prefix²) (autoregressive sampling, e.g. a teacher
    generating walks). Architectures outside the fast path recompute the prefix each step.
    """

    def __init__(self, bridge, batch: int):
        self.bridge, self.batch = bridge, batch
        self.native = native_model(bridge)
        self.plan = _plan(self.native)
        n_ctx = self.native.cfg.n_ctx
        #: [layer] (keys, values), each [batch, heads, n_ctx, d_head], filled up to `length`
        self.cache: list[tuple[Tensor, Tensor]] = []
        if self.plan is not None:
            weight = next(self.native.parameters())
            for _, attn, q, *_ in self.plan[2]:
                shape = (batch, attn.n_heads, n_ctx, q.weight.shape[0] // attn.n_heads)
                self.cache.append((weight.new_empty(shape), weight.new_empty(shape)))
        self.prefix: list[Tensor] = []
        self.length = 0

    @torch.inference_mode()
    def step(self, tokens: Int[Tensor, " batch"]) -> Float[Tensor, "batch d_vocab_out"]:
        if self.length >= self.native.cfg.n_ctx:
            raise ValueError(f"CachedDecoder: the model's context is {self.length} positions")
        t = self.length
        self.length += 1
        if self.plan is None:
            self.prefix.append(tokens)
            return sequence_logits(self.bridge, torch.stack(self.prefix, 1))[:, -1]
        embed, pos, blocks, head = self.plan
        x = (embed.weight.index_select(0, tokens) + pos.weight[t])[:, None]  # [batch, 1, d]
        for (ln1, attn, q, k, v, o, block, mlp), (keys, values) in zip(blocks, self.cache):
            weight = torch.cat([q.weight, k.weight, v.weight])
            bias = None if q.bias is None else torch.cat([q.bias, k.bias, v.bias])
            qkv = F.linear(ln1(x), weight, bias).view(self.batch, 1, 3, attn.n_heads, -1)
            q_, k_, v_ = qkv.permute(2, 0, 3, 1, 4)  # each [batch, heads, 1, d_head]
            keys[:, :, t] = k_[:, :, 0]
            values[:, :, t] = v_[:, :, 0]
            z = F.scaled_dot_product_attention(
                q_, keys[:, :, : t + 1], values[:, :, : t + 1], scale=1.0 / attn.scale
            )
            x = x + F.linear(z.transpose(1, 2).reshape(self.batch, 1, -1), o.weight, o.bias)
            if mlp is not None:
                x = x + mlp_output(block, mlp_hidden(block, x, mlp), mlp)
        return unembed(self.native, x, head)[:, 0]
