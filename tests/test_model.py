"""The model module: TransformerLens 4 bridge, and the fast answer-position forward."""

from __future__ import annotations

import pytest
import torch

from interp.config import ModelConfig
from interp.model import answer_logits, build_model, load_state, state_dict
from tests.conftest import randomize_weights



@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64),
        ModelConfig(n_layers=3, d_model=32, n_heads=2, d_head=16, d_mlp=64, normalization="LN", act_fn="gelu"),
        ModelConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, normalization="LN"),
    ],
)
def test_fast_answer_logits_equal_the_hooked_forward(config):
    model = build_model(config, d_vocab=20, d_vocab_out=19, n_ctx=4)
    randomize_weights(model)  # biases and LN weights non-trivial
    tokens = torch.randint(0, 20, (64, 4))
    with torch.no_grad():
        expected = model(tokens)[:, -1]
        fast = answer_logits(model, tokens)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-5)


def test_fast_path_gradients_match():
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), d_vocab=8, d_vocab_out=7, n_ctx=3)
    randomize_weights(model)
    tokens = torch.randint(0, 8, (32, 3))
    labels = torch.randint(0, 7, (32,))
    grads = []
    for fn in (lambda t: model(t)[:, -1], lambda t: answer_logits(model, t)):
        model.zero_grad()
        torch.nn.functional.cross_entropy(fn(tokens), labels).backward()
        grads.append({n: p.grad.clone() for n, p in model.original_model.named_parameters()})
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_bridge_exposes_transformerlens_names_and_hooks():
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), d_vocab=12, d_vocab_out=11, n_ctx=3)
    assert tuple(model.W_E.shape) == (12, 16) and tuple(model.W_U.shape) == (16, 11)
    assert tuple(model.blocks[0].attn.W_Q.shape) == (2, 16, 8)
    assert tuple(model.blocks[0].mlp.W_in.shape) == (16, 32)
    _, cache = model.run_with_cache(torch.randint(0, 12, (5, 3)))
    assert tuple(cache["blocks.0.attn.hook_pattern"].shape) == (5, 2, 3, 3)
    assert tuple(cache["blocks.0.mlp.hook_post"].shape) == (5, 3, 32)


def test_init_is_seeded_and_leaves_global_rng_alone():
    config = ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=7)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = state_dict(build_model(config, d_vocab=8, d_vocab_out=7, n_ctx=3))
    after = torch.rand(1)
    b = state_dict(build_model(config, d_vocab=8, d_vocab_out=7, n_ctx=3))
    assert torch.equal(before, after)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_state_rejects_mismatched_shapes():
    small = build_model(ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), d_vocab=8, d_vocab_out=7, n_ctx=3)
    big = build_model(ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64), d_vocab=8, d_vocab_out=7, n_ctx=3)
    with pytest.raises(ValueError, match="shape"):
        load_state(small, state_dict(big))


def test_tied_embeddings_share_one_parameter():
    model = build_model(ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, tied_embeddings=True), d_vocab=9, d_vocab_out=9, n_ctx=3)
    native = model.original_model
    assert native.head.weight is native.tok_embed.weight
    assert "head.weight" not in state_dict(model)
    with pytest.raises(ValueError, match="tied_embeddings"):
        build_model(ModelConfig(tied_embeddings=True), d_vocab=9, d_vocab_out=8, n_ctx=3)
