"""The fast forwards (see `interp.model`): only what the loss at the answer position
depends on, from the very same parameters as the bridge's hooked forward."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.model.build import native_model


def supports_fast_path(native: nn.Module) -> bool:
    cfg = native.cfg
    return (
        native.pos is not None
        and float(cfg.output_logits_soft_cap) <= 0
        and all(float(block.attn.attn_scores_soft_cap) <= 0 for block in native.layers)
        and all(block.attn.kv_repeats == 1 and block.attn.causal for block in native.layers)
    )


def _attend(
    block: nn.Module,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool,
    record: dict[str, Tensor] | None = None,
) -> Tensor:
    """Multi-head attention from projected q [batch, q_pos, H*dh], k/v [batch, k_pos, H*dh].

    With `record`, stores the last query's `pattern [batch, head, key_pos]` and
    `z [batch, head, d_head]` (TransformerLens's hook_pattern / hook_z at that position).
    """
    attn = block.attn
    n_heads, d_head = attn.n_heads, attn.d_head
    batch = q.shape[0]
    q = q.view(batch, -1, n_heads, d_head).transpose(1, 2)
    k = k.view(batch, -1, n_heads, d_head).transpose(1, 2)
    v = v.view(batch, -1, n_heads, d_head).transpose(1, 2)
    if q.shape[2] == 1:
        # One query (the answer position): broadcast-multiply instead of batch×head tiny
        # matmuls, which cost ~3x more on CPU, forward and backward.
        scores = (q * k).sum(-1)[:, :, None] / attn.scale  # [batch, head, 1, key_pos]
    else:
        scores = q @ k.transpose(-2, -1) / attn.scale
    if causal:
        seq = scores.shape[-1]
        scores = scores.masked_fill(attn.causal_mask[:seq, :seq], float("-inf"))
    pattern = F.softmax(scores, dim=-1)
    if q.shape[2] == 1:
        z = (pattern.transpose(-1, -2) * v).sum(-2, keepdim=True)  # [batch, head, 1, d_head]
    else:
        z = pattern @ v  # [batch, head, q_pos, d_head]
    if record is not None:
        record["pattern"] = pattern[:, :, -1]
        record["z"] = z[:, :, -1]
    z = z.transpose(1, 2).reshape(batch, q.shape[2], n_heads * d_head)
    return attn.o(z)


def _mlp(block: nn.Module, x: Tensor, record: dict[str, Tensor] | None) -> Tensor:
    if record is None:
        return block.mlp(x)
    mlp = block.mlp
    post = mlp.act(mlp.fc_in(x))  # blocks.L.mlp.hook_post
    out = mlp.fc_out(post)
    record["mlp_post"] = post[:, -1]
    record["mlp_out"] = out[:, -1]
    return out


def _lookup(
    table: Float[Tensor, "pos d_vocab d"], positions: Tensor, tokens: Int[Tensor, "batch pos"]
) -> Tensor:
    """table[positions, tokens] as one index_select on the flattened table: its backward is
    an index_add, ~2.5x cheaper on CPU than advanced indexing's accumulate-index_put."""
    n_pos, d_vocab, d = table.shape
    flat = (positions * d_vocab + tokens).reshape(-1)
    return table.reshape(n_pos * d_vocab, d).index_select(0, flat).view(*tokens.shape, d)


def _answer_forward(
    native: nn.Module,
    tokens: Int[Tensor, "batch pos"],
    records: list[dict[str, Tensor]] | None = None,
) -> Float[Tensor, "batch d_vocab_out"]:
    """The shortcut forward behind `answer_logits`; with `records` (one dict per layer plus
    one for the embedding and final residual) it also keeps the last position's activations."""
    seq = tokens.shape[1]
    n_layers = len(native.layers)
    positions = torch.arange(seq, device=tokens.device)
    # Layer 0 sees only (position, token) embeddings: tabulate them once per step.
    embed_table = (
        native.tok_embed.weight[None] + native.pos.weight[:seq, None]
    )  # [pos, d_vocab, d_model]
    resid: Tensor | None = None
    for layer, block in enumerate(native.layers):
        is_last = layer == n_layers - 1
        record = records[layer] if records is not None else None
        if layer == 0:
            normed = block.ln1(embed_table)
            k = _lookup(block.attn.k(normed), positions, tokens)
            v = _lookup(block.attn.v(normed), positions, tokens)
            if is_last:
                q = block.attn.q(normed[seq - 1]).index_select(0, tokens[:, -1])[:, None]
                resid = embed_table[seq - 1].index_select(0, tokens[:, -1])[:, None]
            else:
                q = _lookup(block.attn.q(normed), positions, tokens)
                resid = _lookup(embed_table, positions, tokens)
            if records is not None:
                records[-1]["embed"] = resid[:, -1]
        else:
            assert resid is not None
            normed = block.ln1(resid)
            k, v = block.attn.k(normed), block.attn.v(normed)
            q = block.attn.q(normed[:, -1:]) if is_last else block.attn.q(normed)
            if is_last:
                resid = resid[:, -1:]
        resid = resid + _attend(block, q, k, v, causal=not is_last, record=record)
        if not native.cfg.attn_only:
            resid = resid + _mlp(block, block.ln2(resid), record)
    assert resid is not None
    if records is not None:
        records[-1]["resid_final"] = resid[:, -1]
    return native.head(native.ln_out(resid[:, -1]))


def answer_logits(bridge, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits at the last position, computing only what they depend on.

    Equal (to float rounding) to `bridge(tokens)[:, -1]`; no hooks fire. Falls back to the
    full native forward for architectures the shortcut does not cover.
    """
    return _answer_logits(native_model(bridge), tokens)


def _answer_logits(native: nn.Module, tokens: Tensor) -> Tensor:
    return _answer_forward(native, tokens) if supports_fast_path(native) else native(tokens)[:, -1]


def unwrapped(module: nn.Module) -> nn.Module:
    """The plain module a bridge component wraps (its hook points skipped)."""
    return getattr(module, "_original_component", module)


def mlp_parts(block: nn.Module) -> tuple:
    """A (raw) block's MLP modules without hook wrappers: (ln2, fc_in, act, the MLP's own
    LayerNorm or None, fc_out). Looked up once, they spare the wrappers' per-call cost."""
    mlp = unwrapped(block.mlp)
    own_ln = unwrapped(mlp.ln) if mlp.ln is not None else None
    return unwrapped(block.ln2), unwrapped(mlp.fc_in), mlp.act, own_ln, unwrapped(mlp.fc_out)


def mlp_hidden(block: nn.Module, x: Tensor, parts: tuple | None = None) -> Tensor:
    """The hidden units of a (raw) block's MLP on its input `x` (LayerNorm, fc_in, act, and
    the MLP's own LayerNorm if it has one), without hook wrappers (`parts`: `mlp_parts`)."""
    ln2, fc_in, act, own_ln, _ = parts or mlp_parts(block)
    hidden = act(F.linear(ln2(x), fc_in.weight, fc_in.bias))
    return own_ln(hidden) if own_ln is not None else hidden


def mlp_output(block: nn.Module, hidden: Tensor, parts: tuple | None = None) -> Tensor:
    """The MLP's contribution to the residual stream from its hidden units."""
    fc_out = parts[4] if parts else unwrapped(unwrapped(block.mlp).fc_out)
    return F.linear(hidden, fc_out.weight, fc_out.bias)


def unembed(native: nn.Module, final: Tensor, parts: tuple | None = None) -> Tensor:
    """Logits from the final residual stream (ln_out, then the unembedding; `parts`: the
    unwrapped (ln_out, head), looked up once by the caller)."""
    ln_out, head = parts or (unwrapped(native.ln_out), unwrapped(native.head))
    return F.linear(ln_out(final), head.weight, head.bias)


class _AnswerLogits(nn.Module):
    """`answer_logits` as a module around the native model, for `torch.func.functional_call`."""

    def __init__(self, bridge):
        super().__init__()
        self.native = native_model(bridge)

    def forward(self, tokens: Tensor) -> Tensor:
        return _answer_logits(self.native, tokens)


def stacked_answer_logits(
    bridge, stacked: dict[str, Tensor], tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "seed batch d_vocab_out"]:
    """`answer_logits` of several models of `bridge`'s shape at once.

    `stacked[name]` holds `parameters(bridge)[name]` of every model on a leading seed axis.
    The same forward runs under `torch.func.vmap`: one batched kernel per op for all models
    (the bridge's own weights are not read). Gradients flow into `stacked`.
    """
    from torch.func import functional_call, vmap

    module = _AnswerLogits(bridge)
    prefixed = {f"native.{name}": tensor for name, tensor in stacked.items()}
    return vmap(lambda params: functional_call(module, params, (tokens,)))(prefixed)


class _Bound(nn.Module):
    """`forward(bridge, tokens)` as a module around the bridge's native model, for
    `torch.func.functional_call` (the bridge is held outside the module tree)."""

    def __init__(self, bridge, forward):
        super().__init__()
        self.native = native_model(bridge)
        self._call = lambda tokens: forward(bridge, tokens)

    def forward(self, tokens: Tensor) -> Tensor:
        return self._call(tokens)


def vmapped_logits(forward, bridge, stacked: dict[str, Tensor], tokens: Tensor) -> Tensor:
    """`forward(bridge, tokens)` of several models of `bridge`'s shape at once, each on its own
    tokens ([member, ...]; `stacked` as for `stacked_answer_logits`), under `torch.func.vmap`:
    right for any forward that reads only the model's parameters. `bridge` must be a model
    used only for its architecture (functional_call swaps its parameters during the call)."""
    from torch.func import functional_call, vmap

    module = _Bound(bridge, forward)
    prefixed = {f"native.{name}": tensor for name, tensor in stacked.items()}
    return vmap(lambda params, x: functional_call(module, params, (x,)))(prefixed, tokens)


def supports_answer_activations(bridge) -> bool:
    """Whether `answer_activations` covers this architecture (else use `run_with_cache`)."""
    native = native_model(bridge)
    return (
        supports_fast_path(native)
        and not native.cfg.attn_only
        and all(getattr(block.mlp, "ln", None) is None for block in native.layers)
    )


def _one_layer_tables_apply(native: nn.Module) -> bool:
    """A 1-layer model without normalization: its answer-position residual is linear in tables."""
    block = native.layers[0] if len(native.layers) == 1 else None
    return block is not None and all(
        isinstance(getattr(m, "original_component", m), nn.Identity)
        for m in (block.ln1, block.ln2, native.ln_out)
    )


def _one_layer_answer_activations(
    native: nn.Module, tokens: Int[Tensor, "batch pos"], *, attribution: bool = True
) -> dict[str, Tensor]:
    """`answer_activations` of a 1-layer, normalization-free model from per-(head, position,
    token) tables (analysis only; training keeps `_answer_forward`, whose gradients are tested).

    Without LayerNorm every input reaches the answer position's MLP as a pattern-weighted sum
    of vectors that depend on one (position, token) each: the value of head h at source
    position s is v_h(E[s, x_s]), so attention output and MLP pre-activation are
        attn_out = Σ_{h,s} pattern[h, s] · v_h(E[s, x_s]) W_O^h + b_O,
        pre      = Σ_{h,s} pattern[h, s] · v_h(E[s, x_s]) W_O^h W_in + (E[-1, x_-1] + b_O) W_in +
        b_in.
    The products are tabulated once per checkpoint (H·n_ctx·d_vocab rows) and summed with
    `F.embedding_bag(per_sample_weights=pattern)`: ~12 table rows per input instead of the
    d_model × d_mlp matmul, about half the multiply-adds of the answer-position forward.
    Attention scores come from a [last token, head, position, token] table the same way.
    """
    block = native.layers[0]
    attn, mlp = block.attn, block.mlp
    batch, seq = tokens.shape
    n_heads, d_head = attn.n_heads, attn.d_head
    vocab = native.tok_embed.weight.shape[0]
    embed_table = (
        native.tok_embed.weight[None] + native.pos.weight[:seq, None]
    )  # [pos, vocab, d_model]
    last = tokens[:, -1]
    q = attn.q(embed_table[seq - 1]).view(vocab, n_heads, d_head)  # by the last token
    k = attn.k(embed_table).view(seq, vocab, n_heads, d_head)
    v = attn.v(embed_table).view(seq, vocab, n_heads, d_head)
    score_table = torch.einsum("lhd,svhd->lhsv", q, k) / attn.scale  # [last, head, pos, token]
    head = torch.arange(n_heads, device=tokens.device)
    pos = torch.arange(seq, device=tokens.device)
    # Row (h, s, x) of the flattened tables belongs to head h, source position s, token x.
    rows = (head[None, :, None] * seq + pos[None, None, :]) * vocab + tokens[
        :, None, :
    ]  # [batch, head, pos]
    per_last = n_heads * seq * vocab
    scores = score_table.reshape(-1).take(
        last[:, None, None] * per_last + rows
    )  # [batch, head, key_pos]
    pattern = F.softmax(
        scores, dim=-1
    )  # [batch, head, key_pos]; a causal last query sees every key
    # One bag per input: its H·n_ctx (head, position, token) rows weighted by the pattern, plus
    # one row indexed by the last token with weight 1 for the terms that do not pass attention.
    bag = torch.cat([rows.reshape(batch, -1), (n_heads * seq * vocab + last)[:, None]], dim=1)
    weights = torch.cat([pattern.reshape(batch, -1), pattern.new_ones(batch, 1)], dim=1)

    def bag_sum(table: Tensor) -> Tensor:
        return F.embedding_bag(bag, table, per_sample_weights=weights, mode="sum")

    v_hsx = v.permute(2, 0, 1, 3)  # [head, pos, vocab, d_head]
    W_O = attn.o.weight.view(-1, n_heads, d_head)  # [d_model, head, d_head]
    out_table = torch.einsum("hsxd,mhd->hsxm", v_hsx, W_O).reshape(-1, W_O.shape[0])  # v_h W_O^h
    embed_last = embed_table[seq - 1]  # [vocab, d_model], by the last token
    resid_table = torch.cat([out_table, embed_last + attn.o.bias])
    W_in = mlp.fc_in.weight  # [d_mlp, d_model]
    pre = bag_sum(torch.cat([out_table @ W_in.T, resid_table[-vocab:] @ W_in.T + mlp.fc_in.bias]))
    post = pre.clamp_(min=0) if mlp.act is F.relu else mlp.act(pre)
    out = {"embed": embed_last.index_select(0, last), "pattern": pattern[None], "mlp_post": post}
    if attribution:
        # z: a block-structured table, head h's values in columns h·d_head … (h+1)·d_head.
        z_table = v.new_zeros(n_heads, seq, vocab, n_heads, d_head)
        z_table[head, :, :, head] = v_hsx
        z = bag_sum(
            torch.cat([z_table.view(-1, n_heads * d_head), v.new_zeros(vocab, n_heads * d_head)])
        )
        out["z"] = z.view(1, batch, n_heads, d_head)
        mlp_out = mlp.fc_out(post)
        resid_final = bag_sum(resid_table) + mlp_out
        return out | {
            "logits": native.head(resid_final),
            "mlp_out": mlp_out[None],
            "resid_final": resid_final,
        }
    # Logits without the residual: resid_mid W_U (tabulated) + post (W_U W_out), one matmul.
    unembed = native.head.weight  # [d_vocab_out, d_model]
    W_L = unembed @ mlp.fc_out.weight  # [d_vocab_out, d_mlp]
    logit_table = resid_table @ unembed.T
    logit_table[-vocab:] += unembed @ mlp.fc_out.bias + native.head.bias  # the weight-1 rows
    direct_logits = bag_sum(logit_table)
    return out | {"logits": torch.addmm(direct_logits, post, W_L.T)}


def answer_activations(
    bridge, tokens: Int[Tensor, "batch pos"], *, attribution: bool = True
) -> dict[str, Tensor]:
    """Last-position activations by the shortcut forward, no hooks (analysis fast path).

    Returns `logits [batch, d_vocab_out]`, `embed [batch, d_model]` (hook_embed +
    hook_pos_embed), `z [layer, batch, head, d_head]`, `pattern [layer, batch, head,
    key_pos]`, `mlp_out [layer, batch, d_model]`, `mlp_post [batch, d_mlp]` (last layer)
    and `resid_final [batch, d_model]`: the values TransformerLens's hooks of those names
    hold at the last position (`tests/circuits/test_fast_paths.py` compares them with
    `run_with_cache`).
    A 1-layer model without normalization takes `_one_layer_answer_activations`; there
    `attribution=False` leaves out `z`, `mlp_out` and `resid_final` (only direct logit
    attribution reads them) and gets the logits from one d_mlp × d_vocab_out matmul.
    """
    native = native_model(bridge)
    if not supports_answer_activations(bridge):
        raise ValueError("answer_activations: architecture not covered; use run_with_cache")
    if _one_layer_tables_apply(native):
        return _one_layer_answer_activations(native, tokens, attribution=attribution)
    n_layers = len(native.layers)
    records: list[dict[str, Tensor]] = [{} for _ in range(n_layers + 1)]
    logits = _answer_forward(native, tokens, records)
    layers, last = records[:n_layers], records[-1]
    stacked = {name: torch.stack([r[name] for r in layers]) for name in ("z", "pattern", "mlp_out")}
    return {
        "logits": logits,
        "embed": last["embed"],
        **stacked,
        "mlp_post": layers[-1]["mlp_post"],
        "resid_final": last["resid_final"],
    }
