"""Logit lens: the last layer reproduces the model's own logits; ranks match a naive count."""

from __future__ import annotations

import pytest
import torch

from circuits.families.entity.analysis import random_init_model
from circuits.families.entity.measures import (
    entity_logit_lens,
    sample_examples,
)
from interp.registry import get_family
from interp.tasks import build_task
from probes.logit_lens import (
    LensTarget,
    logit_lens,
    resid_hook_names,
    residual_stack,
    unembed_resid,
)
from tests.families.entity.test_entity_tasks import tiny_entity_run, tiny_task


@pytest.fixture(scope="module")
def two_hop():
    config = tiny_entity_run(tiny_task())
    return random_init_model(config), build_task(config.task)


def test_hook_names_cover_every_layer():
    assert resid_hook_names(2) == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
    ]


def test_last_layer_is_the_model_output(two_hop):
    model, task = two_hop
    tokens = task.tokens[:50]
    with torch.inference_mode():
        stack = residual_stack(model, tokens)
        assert stack.shape == (3, 50, 3, 32)
        torch.testing.assert_close(
            unembed_resid(model, stack[-1]), model(tokens), atol=1e-5, rtol=1e-5
        )


def test_ranks_match_a_naive_count(two_hop):
    model, task = two_hop
    tokens = task.tokens[:40]
    candidates = torch.arange(20)
    target = task.labels[:40]
    result = logit_lens(model, tokens, {"answer": LensTarget(2, target, candidates)})
    with torch.inference_mode():
        logits = model(tokens)[:, 2, :20]
    naive = torch.tensor([int((row > row[t]).sum()) for row, t in zip(logits, target)])
    assert torch.equal(result.rank[0, -1], naive)
    assert torch.allclose(result.mrr_of("answer")[-1], (1.0 / (naive.double() + 1)).mean())


def test_entity_targets(two_hop):
    model, task = two_hop
    index = sample_examples(task, "train_inferred", n=30)
    targets = get_family(task.kind).lens_targets(task, index)
    assert set(targets) == {"bridge", "answer"} and targets["bridge"].position == 1
    assert torch.equal(targets["bridge"].target, task.extras["bridge"][index])
    result = entity_logit_lens(get_family(task.kind), model, task, index)
    assert result.mrr.shape == (2, 3) and ((result.mrr > 0) & (result.mrr <= 1)).all()
    comparison = build_task(tiny_task("comparison"))
    index = sample_examples(comparison, "train_inferred", n=30)
    targets = get_family(comparison.kind).lens_targets(comparison, index)
    assert set(targets) == {"v1", "v2", "answer"}
    assert all(comparison.token_names[int(t)].startswith("v") for t in targets["v1"].target)
    assert [comparison.token_names[int(t)] for t in targets["answer"].candidates] == ["<", "=", ">"]
