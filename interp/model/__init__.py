"""The one place that knows TransformerLens's internals: this package (TransformerLens 4,
`TransformerBridge.boot_native`).

It builds the hooked transformer and names its parameters (`interp.model.build`), and holds
the fast forwards (`interp.model.forward`).
Everything else receives a `TransformerBridge` and uses TransformerLens names: `W_E`,
`blocks.0.attn.W_Q [n_heads, d_model, d_head]`, hooks such as `blocks.0.mlp.hook_post`.

Checkpoints store the native parameter names (`parameters`, with the bridge's wrapper
segments); what users read (metric columns, imported checkpoints) uses TL's names (`tl_name`:
`blocks.0.attn.W_K`, `embed.W_E`, `blocks.0.ln1.w`) and layouts (`to_tl_layout`).

Training does not go through the bridge's hooked forward: it calls
`answer_logits`, which computes only what the loss at the answer position depends on
(the last layer's attention and MLP at the last position only, and the first layer's
Q/K/V from per-(position, token) tables instead of per-example matmuls). It reads the
very same parameters, and `tests/interp/test_model.py` checks it equals the bridge's logits.
`stacked_answer_logits` runs that same forward for several models at once (`torch.func.vmap`).
Next-token families train through `sequence_logits`: every position, the same parameters,
no hooks, causal attention through `F.scaled_dot_product_attention`; `stacked_sequence_logits`
runs it for ensemble members trained together (a leading member axis), and `vmapped_logits`
any forward for several models at once. `CachedDecoder` is the same forward one position at
a time with a key/value cache, for sampling.
"""

from interp.model.build import (
    build_model,
    canonical_name,
    from_tl_layout,
    load_state,
    native_model,
    parameters,
    state_dict,
    tl_name,
    tl_named_parameters,
    to_tl_layout,
)
from interp.model.forward import (
    answer_activations,
    answer_logits,
    stacked_answer_logits,
    supports_answer_activations,
    vmapped_logits,
)
from interp.model.sequence import CachedDecoder, sequence_logits, stacked_sequence_logits

__all__ = [
    "CachedDecoder",
    "answer_activations",
    "answer_logits",
    "build_model",
    "canonical_name",
    "from_tl_layout",
    "load_state",
    "native_model",
    "parameters",
    "sequence_logits",
    "stacked_answer_logits",
    "stacked_sequence_logits",
    "state_dict",
    "supports_answer_activations",
    "tl_name",
    "tl_named_parameters",
    "to_tl_layout",
    "vmapped_logits",
]
