"""Construction, parameter names and state of the hooked transformer (see `interp.model`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from einops import rearrange
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
