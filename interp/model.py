"""The one place that knows TransformerLens's internals (TransformerLens 4,
`TransformerBridge.boot_native`).

It builds the hooked transformer, names its parameters, and holds the fast forwards.
Everything else receives a `TransformerBridge` and uses TransformerLens names: `W_E`,
`blocks.0.attn.W_Q [n_heads, d_model, d_head]`, hooks such as `blocks.0.mlp.hook_post`.

Checkpoints store the native parameter names (`parameters`, with the bridge's wrapper
segments); what users read (metric columns, imported checkpoints) uses TL's names (`tl_name`:
`blocks.0.attn.W_K`, `embed.W_E`, `blocks.0.ln1.w`) and layouts (`to_tl_layout`).

Training does not go through the bridge's hooked forward: it calls
`answer_logits`, which computes only what the loss at the answer position depends on
(the last layer's attention and MLP at the last position only, and the first layer's
Q/K/V from per-(position, token) tables instead of per-example matmuls). It reads the
very same parameters, and `tests/test_model.py` checks it equals the bridge's logits.
`stacked_answer_logits` runs that same forward for several models at once (`torch.func.vmap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from jaxtyping import Float, Int
from torch import Tensor, nn

if TYPE_CHECKING:
    from interp.config import ModelConfig


#: TransformerLens names of the native parameters (wrapper segments removed, `canonical_name`);
#: block entries follow `layers.L.` / `blocks.L.`. Norm parameters are TL's `w` and `b`.
_TL_TOP = {
    "tok_embed.weight": "embed.W_E",
    "pos.weight": "pos_embed.W_pos",
    "head.weight": "unembed.W_U",
    "ln_out.weight": "ln_final.w",
    "ln_out.bias": "ln_final.b",
}
_TL_BLOCK = {
    "attn.q.weight": "attn.W_Q",
    "attn.q.bias": "attn.b_Q",
    "attn.k.weight": "attn.W_K",
    "attn.k.bias": "attn.b_K",
    "attn.v.weight": "attn.W_V",
    "attn.v.bias": "attn.b_V",
    "attn.o.weight": "attn.W_O",
    "attn.o.bias": "attn.b_O",
    "mlp.fc_in.weight": "mlp.W_in",
    "mlp.fc_in.bias": "mlp.b_in",
    "mlp.fc_out.weight": "mlp.W_out",
    "mlp.fc_out.bias": "mlp.b_out",
    "ln1.weight": "ln1.w",
    "ln1.bias": "ln1.b",
    "ln2.weight": "ln2.w",
    "ln2.bias": "ln2.b",
}
#: native layout (nn.Linear weight [out, in], heads flattened head-major) -> TL layout, by TL leaf
#: name
_TL_LAYOUT = {
    **{f"W_{x}": "(head d_head) d_model -> head d_model d_head" for x in "QKV"},
    **{f"b_{x}": "(head d_head) -> head d_head" for x in "QKV"},
    "W_O": "d_model (head d_head) -> head d_head d_model",
    "W_in": "d_mlp d_model -> d_model d_mlp",
    "W_out": "d_model d_mlp -> d_mlp d_model",
    "W_U": "d_vocab_out d_model -> d_model d_vocab_out",
}


def build_model(
    config: ModelConfig,
    *,
    d_vocab: int,
    d_vocab_out: int,
    n_ctx: int,
    device: str | torch.device = "cpu",
):
    """A freshly initialized hooked transformer for a task of the given vocabulary and length.

    Initialization is seeded by `config.seed` and does not touch the global RNG.
    """
    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native)
    from transformer_lens.model_bridge import TransformerBridge

    if config.tied_embeddings and d_vocab != d_vocab_out:
        raise ValueError(
            f"model.tied_embeddings: needs the same input and output vocabulary, got {d_vocab} and "
            f"{d_vocab_out}"
        )
    tl_config = dict(
        d_model=config.d_model,
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        d_head=config.d_head,
        d_mlp=config.d_mlp,
        d_vocab=d_vocab,
        d_vocab_out=d_vocab_out,
        n_ctx=n_ctx,
        act_fn=config.act_fn,
        normalization_type=None if config.normalization == "none" else config.normalization,
        init_mode=config.init_mode,
        seed=config.seed,
        positional_embedding_type="standard",
    )
    if config.init_std > 0:
        tl_config["initializer_range"] = config.init_std
    bridge = TransformerBridge.boot_native(tl_config, device=device)
    native = native_model(bridge)
    if config.tied_embeddings:
        native.head.weight = native.tok_embed.weight
    return bridge


def native_model(bridge) -> nn.Module:
    """The plain `nn.Module` behind the bridge; its parameters are the bridge's parameters."""
    return bridge.original_model


def parameters(bridge) -> dict[str, nn.Parameter]:
    """Unique trainable parameters by native name (tied weights appear once)."""
    return dict(native_model(bridge).named_parameters())


def canonical_name(native_name: str) -> str:
    """A native name without the bridge's wrapper segments: `layers.0.attn.q.weight`."""
    return native_name.replace("_original_component.", "")


def tl_name(native_name: str) -> str:
    """The TransformerLens name of a native parameter, e.g. `…attn…k…bias` ->
    `blocks.0.attn.b_K`."""
    name = canonical_name(native_name)
    layer, _, rest = name.removeprefix("layers.").partition(".")
    tl = (
        f"blocks.{layer}.{_TL_BLOCK[rest]}"
        if name.startswith("layers.") and rest in _TL_BLOCK
        else _TL_TOP.get(name)
    )
    if tl is None:
        raise KeyError(f"no TransformerLens name for the native parameter {native_name!r}")
    return tl


def tl_named_parameters(bridge) -> dict[str, nn.Parameter]:
    """`parameters` keyed by TL name (`embed.W_E`, `blocks.0.attn.W_K`, `blocks.0.ln1.w`), each
    tensor in the native layout: right for norms, `to_tl_layout` for TL's shapes."""
    return {tl_name(name): param for name, param in parameters(bridge).items()}


def to_tl_layout(name: str, tensor: Tensor, n_heads: int) -> Tensor:
    """A native tensor in TL's layout, by its TL name: W_Q [head, d_model, d_head], W_in [d_model,
    d_mlp], …"""
    pattern = _TL_LAYOUT.get(name.rsplit(".", 1)[-1])
    return (
        tensor
        if pattern is None
        else rearrange(tensor, pattern, **({"head": n_heads} if "head" in pattern else {}))
    )


def from_tl_layout(name: str, tensor: Tensor) -> Tensor:
    """The inverse of `to_tl_layout`: a tensor in TL's layout, by its TL name, in the native
    layout."""
    pattern = _TL_LAYOUT.get(name.rsplit(".", 1)[-1])
    if pattern is None:
        return tensor
    native, tl = pattern.split(" -> ")
    return rearrange(tensor, f"{tl} -> {native}")


def state_dict(bridge) -> dict[str, Tensor]:
    """Weights to save: unique parameters, contiguous, detached, on CPU."""
    return {name: p.detach().cpu().clone() for name, p in parameters(bridge).items()}


def load_state(bridge, tensors: dict[str, Tensor]) -> None:
    """Copy saved weights into the model; raises ValueError naming the first mismatch."""
    params = parameters(bridge)
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"weights do not match the config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for name, param in params.items():
        if tuple(tensors[name].shape) != tuple(param.shape):
            raise ValueError(
                f"weights do not match the config: {name} has shape {tuple(tensors[name].shape)}, "
                f"config expects {tuple(param.shape)}"
            )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name].to(param.dtype))


def _supports_fast_path(native: nn.Module) -> bool:
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
    return _answer_forward(native, tokens) if _supports_fast_path(native) else native(tokens)[:, -1]


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


def supports_answer_activations(bridge) -> bool:
    """Whether `answer_activations` covers this architecture (else use `run_with_cache`)."""
    native = native_model(bridge)
    return (
        _supports_fast_path(native)
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
    hold at the last position (`tests/test_fast_paths.py` compares them with `run_with_cache`).
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
