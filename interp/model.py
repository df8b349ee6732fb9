"""The one place that builds hooked transformers (TransformerLens 4, `TransformerBridge.boot_native`).

Everything else receives a `TransformerBridge` and uses TransformerLens names: `W_E`,
`blocks.0.attn.W_Q [n_heads, d_model, d_head]`, hooks such as `blocks.0.mlp.hook_post`.

Training does not go through the bridge's hooked forward: it calls
`answer_logits`, which computes only what the loss at the answer position depends on
(the last layer's attention and MLP at the last position only, and the first layer's
Q/K/V from per-(position, token) tables instead of per-example matmuls). It reads the
very same parameters, and `tests/test_model.py` checks it equals the bridge's logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.config import ModelConfig

#: Native state-dict keys are stored in checkpoints; these are the TL names users see.
TL_NAME_OF_NATIVE = {
    "tok_embed.weight": "embed.W_E",
    "pos.weight": "pos_embed.W_pos",
    "head.weight": "unembed.W_U",
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
    from transformer_lens.model_bridge import TransformerBridge
    import transformer_lens.model_bridge.sources  # noqa: F401  (attaches boot_native)

    if config.tied_embeddings and d_vocab != d_vocab_out:
        raise ValueError(
            f"model.tied_embeddings: needs the same input and output vocabulary, got {d_vocab} and {d_vocab_out}"
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
    block: nn.Module, q: Tensor, k: Tensor, v: Tensor, *, causal: bool, record: dict[str, Tensor] | None = None
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


def _lookup(table: Float[Tensor, "pos d_vocab d"], positions: Tensor, tokens: Int[Tensor, "batch pos"]) -> Tensor:
    """table[positions, tokens] as one index_select on the flattened table: its backward is
    an index_add, ~2.5x cheaper on CPU than advanced indexing's accumulate-index_put."""
    n_pos, d_vocab, d = table.shape
    flat = (positions * d_vocab + tokens).reshape(-1)
    return table.reshape(n_pos * d_vocab, d).index_select(0, flat).view(*tokens.shape, d)


def _answer_forward(
    native: nn.Module, tokens: Int[Tensor, "batch pos"], records: list[dict[str, Tensor]] | None = None
) -> Float[Tensor, "batch d_vocab_out"]:
    """The shortcut forward behind `answer_logits`; with `records` (one dict per layer plus
    one for the embedding and final residual) it also keeps the last position's activations."""
    seq = tokens.shape[1]
    n_layers = len(native.layers)
    positions = torch.arange(seq, device=tokens.device)
    # Layer 0 sees only (position, token) embeddings: tabulate them once per step.
    embed_table = native.tok_embed.weight[None] + native.pos.weight[:seq, None]  # [pos, d_vocab, d_model]
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
    native = native_model(bridge)
    if not _supports_fast_path(native):
        return native(tokens)[:, -1]
    return _answer_forward(native, tokens)


def supports_answer_activations(bridge) -> bool:
    """Whether `answer_activations` covers this architecture (else use `run_with_cache`)."""
    native = native_model(bridge)
    return (
        _supports_fast_path(native)
        and not native.cfg.attn_only
        and all(getattr(block.mlp, "ln", None) is None for block in native.layers)
    )


def answer_activations(bridge, tokens: Int[Tensor, "batch pos"]) -> dict[str, Tensor]:
    """Last-position activations by the shortcut forward, no hooks (analysis fast path).

    Returns `logits [batch, d_vocab_out]`, `embed [batch, d_model]` (hook_embed +
    hook_pos_embed), `z [layer, batch, head, d_head]`, `pattern [layer, batch, head,
    key_pos]`, `mlp_out [layer, batch, d_model]`, `mlp_post [batch, d_mlp]` (last layer)
    and `resid_final [batch, d_model]`: the values TransformerLens's hooks of those names
    hold at the last position (`tests/test_model.py` compares them with `run_with_cache`).
    """
    native = native_model(bridge)
    if not supports_answer_activations(bridge):
        raise ValueError("answer_activations: architecture not covered; use run_with_cache")
    n_layers = len(native.layers)
    records: list[dict[str, Tensor]] = [{} for _ in range(n_layers + 1)]
    logits = _answer_forward(native, tokens, records)
    layers = records[:n_layers]
    return {
        "logits": logits,
        "embed": records[-1]["embed"],
        "z": torch.stack([r["z"] for r in layers]),
        "pattern": torch.stack([r["pattern"] for r in layers]),
        "mlp_out": torch.stack([r["mlp_out"] for r in layers]),
        "mlp_post": layers[-1]["mlp_post"],
        "resid_final": records[-1]["resid_final"],
    }


def full_sequence_logits(bridge, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Reference path: the native model's forward over every position, then the last one."""
    return native_model(bridge)(tokens)[:, -1]
