"""Several seeds at once: seed i follows the single-seed Trainer's loss trajectory."""

from __future__ import annotations

import pytest
import torch

from interp.model import answer_logits, build_model, load_state
from interp.multiseed import MultiSeedTrainer
from interp.training import Trainer
from tests.conftest import tiny_config


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"train__grad_filter": "ema", "train__orthogonal_grad": True, "train__loss": "stablemax"},
        # The forward is the trainer's own (vmapped), so any shape it covers works: LN, 2 layers,
        # MA.
        {
            "model__n_layers": 2,
            "model__normalization": "LN",
            "model__act_fn": "gelu",
            "train__grad_filter": "ma",
            "train__grokfast_window": 5,
            "train__orthogonal_grad": True,
        },
    ],
)
def test_seed_i_matches_a_single_seed_run(tmp_path, overrides):
    config = tiny_config(**overrides)
    seeds = [3, 4, 5]
    batched = MultiSeedTrainer(config, seeds)
    singles = [
        Trainer(config.with_overrides([f"model.seed={s}"]), tmp_path / str(s), progress=False)
        for s in seeds
    ]
    for _ in range(25):
        losses = batched.train_step()
        expected = [t.train_step() for t in singles]
        torch.testing.assert_close(
            losses, torch.tensor(expected, dtype=losses.dtype), rtol=1e-5, atol=1e-7
        )


def test_seed_weights_load_into_a_bridge():
    config = tiny_config()
    batched = MultiSeedTrainer(config, [3, 4])
    batched.train_step()
    t = config.task
    model = build_model(config.model, d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
    load_state(model, batched.seed_state_dict(1))
    tokens = batched.task.tokens
    with torch.no_grad():
        torch.testing.assert_close(
            answer_logits(model, tokens), batched.logits(tokens)[1], rtol=1e-5, atol=1e-5
        )


@pytest.mark.parametrize(
    "overrides",
    [{"train__grad_clip": 1.0}, {"train__batch_size": 8}, {"train__weight_norm_floor": 1.1}],
)
def test_what_would_couple_or_reorder_seeds_is_refused(overrides):
    with pytest.raises(ValueError, match="full batch only, no grad_clip, no weight_norm_floor"):
        MultiSeedTrainer(tiny_config(**overrides), [0])
