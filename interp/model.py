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


def _attend(block: nn.Module, q: Tensor, k: Tensor, v: Tensor, *, causal: bool) -> Tensor:
    """Multi-head attention from projected q [batch, q_pos, H*dh], k/v [batch, k_pos, H*dh]."""
    attn = block.attn
    n_heads, d_head = attn.n_heads, attn.d_head
    batch = q.shape[0]
    q = q.view(batch, -1, n_heads, d_head).transpose(1, 2)
    k = k.view(batch, -1, n_heads, d_head).transpose(1, 2)
    v = v.view(batch, -1, n_heads, d_head).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / attn.scale
    if causal:
        seq = scores.shape[-1]
        scores = scores.masked_fill(attn.causal_mask[:seq, :seq], float("-inf"))
    pattern = F.softmax(scores, dim=-1)
    z = (pattern @ v).transpose(1, 2).reshape(batch, q.shape[2], n_heads * d_head)
    return attn.o(z)


def answer_logits(bridge, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits at the last position, computing only what they depend on.

    Equal (to float rounding) to `bridge(tokens)[:, -1]`; no hooks fire. Falls back to the
    full native forward for architectures the shortcut does not cover.
    """
    native = native_model(bridge)
    if not _supports_fast_path(native):
        return native(tokens)[:, -1]
    seq = tokens.shape[1]
    n_layers = len(native.layers)
    positions = torch.arange(seq, device=tokens.device)
    # Layer 0 sees only (position, token) embeddings: tabulate them once per step.
    embed_table = native.tok_embed.weight[None] + native.pos.weight[:seq, None]  # [pos, d_vocab, d_model]
    resid: Tensor | None = None
    for layer, block in enumerate(native.layers):
        is_last = layer == n_layers - 1
        if layer == 0:
            normed = block.ln1(embed_table)
            k = block.attn.k(normed)[positions, tokens]
            v = block.attn.v(normed)[positions, tokens]
            if is_last:
                q = block.attn.q(normed[seq - 1])[tokens[:, -1]][:, None]
                resid = embed_table[seq - 1][tokens[:, -1]][:, None]
            else:
                q = block.attn.q(normed)[positions, tokens]
                resid = embed_table[positions, tokens]
        else:
            assert resid is not None
            normed = block.ln1(resid)
            k, v = block.attn.k(normed), block.attn.v(normed)
            q = block.attn.q(normed[:, -1:]) if is_last else block.attn.q(normed)
            if is_last:
                resid = resid[:, -1:]
        resid = resid + _attend(block, q, k, v, causal=not is_last)
        if not native.cfg.attn_only:
            resid = resid + block.mlp(block.ln2(resid))
    assert resid is not None
    return native.head(native.ln_out(resid[:, -1]))


def full_sequence_logits(bridge, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch d_vocab_out"]:
    """Reference path: the native model's forward over every position, then the last one."""
    return native_model(bridge)(tokens)[:, -1]
