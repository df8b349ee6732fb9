"""The model module: TransformerLens 4 bridge, and the fast answer-position forward."""

from __future__ import annotations

import pytest
import torch

from interp.config import ModelConfig
from interp.model import (
    answer_logits,
    build_model,
    from_tl_layout,
    load_state,
    sequence_logits,
    stacked_answer_logits,
    state_dict,
    tl_name,
    tl_named_parameters,
    to_tl_layout,
)
from tests.conftest import randomize_weights


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64),
        ModelConfig(
            n_layers=3,
            d_model=32,
            n_heads=2,
            d_head=16,
            d_mlp=64,
            normalization="LN",
            act_fn="gelu",
        ),
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
    model = build_model(
        ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), d_vocab=8, d_vocab_out=7, n_ctx=3
    )
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


@pytest.mark.parametrize("normalization", ["LN", "none"])
def test_sequence_logits_and_their_gradients_equal_the_hooked_forward(normalization):
    config = ModelConfig(
        n_layers=2,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        normalization=normalization,
    )
    model = build_model(config, d_vocab=12, d_vocab_out=12, n_ctx=9)
    randomize_weights(model)
    tokens = torch.randint(0, 12, (16, 9))
    labels = torch.randint(0, 12, (16 * 9,))
    grads, outputs = [], []
    for fn in (model, lambda t: sequence_logits(model, t)):
        model.zero_grad()
        logits = fn(tokens)
        outputs.append(logits.detach())
        torch.nn.functional.cross_entropy(logits.reshape(-1, 12), labels).backward()
        grads.append({n: p.grad.clone() for n, p in model.original_model.named_parameters()})
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6)


def test_bridge_exposes_transformerlens_names_and_hooks():
    model = build_model(
        ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), d_vocab=12, d_vocab_out=11, n_ctx=3
    )
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
    small = build_model(
        ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32), d_vocab=8, d_vocab_out=7, n_ctx=3
    )
    big = build_model(
        ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=64), d_vocab=8, d_vocab_out=7, n_ctx=3
    )
    with pytest.raises(ValueError, match="shape"):
        load_state(small, state_dict(big))


def test_tied_embeddings_share_one_parameter():
    model = build_model(
        ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32, tied_embeddings=True),
        d_vocab=9,
        d_vocab_out=9,
        n_ctx=3,
    )
    native = model.original_model
    assert native.head.weight is native.tok_embed.weight
    assert not any(name.startswith("head.") for name in state_dict(model))
    assert set(tl_named_parameters(model)) == {
        "embed.W_E",
        "pos_embed.W_pos",
        *(
            f"blocks.0.{part}"
            for part in (
                "attn.W_Q",
                "attn.b_Q",
                "attn.W_K",
                "attn.b_K",
                "attn.W_V",
                "attn.b_V",
                "attn.W_O",
                "attn.b_O",
                "mlp.W_in",
                "mlp.b_in",
                "mlp.W_out",
                "mlp.b_out",
            )
        ),
    }
    with pytest.raises(ValueError, match="tied_embeddings"):
        build_model(ModelConfig(tied_embeddings=True), d_vocab=9, d_vocab_out=8, n_ctx=3)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(d_model=16, n_heads=2, d_head=8, d_mlp=32),
        ModelConfig(n_layers=2, d_model=16, n_heads=4, d_head=4, d_mlp=24, normalization="LN"),
    ],
)
def test_tl_names_and_layouts_are_transformerlens_own(config):
    """`tl_name` and `to_tl_layout` give each weight exactly the name and shape TransformerLens
    gives it."""
    model = build_model(config, d_vocab=9, d_vocab_out=8, n_ctx=3)
    randomize_weights(model)
    theirs = {
        name: t.detach() for name, t in model.tl_parameters().items() if t.requires_grad
    }  # b_U: a zero buffer
    ours = tl_named_parameters(model)
    assert set(ours) == set(theirs)
    assert ("blocks.1.ln2.w" in ours) == (config.normalization == "LN")
    for name, param in ours.items():
        in_tl_layout = to_tl_layout(name, param.detach(), config.n_heads)
        assert torch.equal(in_tl_layout, theirs[name]), name
        assert torch.equal(from_tl_layout(name, in_tl_layout), param.detach()), name
    with pytest.raises(KeyError, match="no TransformerLens name"):
        tl_name("layers.0._original_component.attn._original_component.rotary.weight")


def test_stacked_answer_logits_are_each_models_answer_logits():
    config = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, normalization="LN", act_fn="gelu"
    )
    models = [build_model(config, d_vocab=9, d_vocab_out=8, n_ctx=3) for _ in range(3)]
    for model in models:
        randomize_weights(model)
    stacked = {
        name: torch.stack([state_dict(m)[name] for m in models]) for name in state_dict(models[0])
    }
    tokens = torch.randint(0, 9, (20, 3))
    with torch.no_grad():
        logits = stacked_answer_logits(
            build_model(config, d_vocab=9, d_vocab_out=8, n_ctx=3), stacked, tokens
        )
        for i, model in enumerate(models):
            torch.testing.assert_close(
                logits[i], answer_logits(model, tokens), rtol=1e-5, atol=1e-6
            )
