"""A walk model built by hand whose prediction reads only the current node."""

from __future__ import annotations

import numpy as np
import torch

from interp.config import ModelConfig
from interp.model import build_model, native_model


def markov_teacher(transition: np.ndarray):
    """A one-layer model whose next-token distribution is row `current` of `transition`:
    the embedding writes the current node one-hot, attention and MLP write nothing, and the
    unembedding reads log P[current, :]."""
    n = len(transition)
    model = build_model(
        ModelConfig(n_layers=1, d_model=n, n_heads=1, d_head=n, d_mlp=4, seed=0),
        d_vocab=n,
        d_vocab_out=n,
        n_ctx=8,
        device="cpu",
    )
    with torch.no_grad():
        for param in native_model(model).parameters():
            param.zero_()
        state = dict(native_model(model).named_parameters())
        state["tok_embed._original_component.weight"].copy_(torch.eye(n))
        log_p = torch.log(torch.as_tensor(transition).clamp_min(1e-12)).float()
        state["head._original_component.weight"].copy_(log_p.T)
    return model
