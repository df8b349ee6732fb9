"""Causal tracing: patching a run into itself changes nothing; known answers at the ends."""

from __future__ import annotations

import pytest
import torch

from circuits.families.entity.analysis import random_init_model
from circuits.families.entity.measures import circuit_score, counterfactuals, sample_examples
from interp.model import build_model
from interp.registry import get_family
from interp.tasks import build_task
from probes.logit_lens import residual_stack
from probes.patching import causal_tracing, patched_logits
from tests.families.entity.test_entity_tasks import tiny_entity_run, tiny_task


def _model(kind):
    config = tiny_entity_run(tiny_task(kind))
    return random_init_model(config), build_task(config.task)


@pytest.fixture(scope="module")
def two_hop():
    return _model("two_hop")


def test_patching_a_run_into_itself_changes_nothing(two_hop):
    model, task = two_hop
    tokens = task.tokens[task.splits["train_inferred"][:40]]
    result = causal_tracing(model, tokens, tokens, task.labels[task.splits["train_inferred"][:40]])
    assert result.changed.shape == (3, 3)
    assert (result.changed == 0).all()


def test_patching_the_swapped_token_embedding_equals_the_counterfactual_run(two_hop):
    model, task = two_hop
    cf = counterfactuals(get_family(task.kind), task, sample_examples(task, n=40), swap="head")
    with torch.inference_mode():
        stack = residual_stack(model, cf.tokens)
        expected = model(cf.tokens)[:, -1]
        # the whole input differs only at the swapped position: layer 0 there = the counterfactual
        # run
        got = patched_logits(
            model, cf.clean_tokens, stack[0, :, cf.swapped_position], 0, cf.swapped_position
        )
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # the last position after the last layer is the counterfactual's output
        got = patched_logits(model, cf.clean_tokens, stack[-1, :, -1], model.cfg.n_layers, 2)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_counterfactuals_change_the_intermediate_state_and_the_answer():
    task = build_task(tiny_task())
    kb = task.extras["kb_tail"]
    index = sample_examples(task, n=50)
    cf = counterfactuals(get_family(task.kind), task, index, swap="head")
    assert len(cf.index) > 25
    h_alt, r1, r2 = cf.tokens[:, 0], task.extras["r1"][cf.index], task.extras["r2"][cf.index]
    assert (kb[h_alt, r1] != task.extras["bridge"][cf.index]).all()
    assert torch.equal(cf.answer, kb[kb[h_alt, r1], r2])
    assert (cf.answer != task.labels[cf.index]).all()
    cf = counterfactuals(get_family(task.kind), task, index, swap="r2")
    assert (cf.answer != task.labels[cf.index]).all()
    comparison = build_task(tiny_task("comparison"))
    index = sample_examples(comparison, n=50)
    for swap in ("e1", "e2"):
        cf = counterfactuals(get_family(comparison.kind), comparison, index, swap=swap)
        assert len(cf.index) > 25 and (cf.answer != comparison.labels[cf.index]).all()
        kb, a = comparison.extras["kb_value"], comparison.extras["attribute"][cf.index]
        v1, v2 = kb[cf.tokens[:, 1], a], kb[cf.tokens[:, 2], a]
        assert [comparison.token_names[int(t)] for t in cf.answer] == [
            "<=>"[int(s) + 1] for s in torch.sign(v1 - v2)
        ]


def test_circuit_score_is_a_fraction_and_zero_for_one_layer():
    model, task = _model("comparison")
    score = circuit_score(get_family(task.kind), model, task, n_examples=50)
    assert 0.0 <= score.score <= 1.0 and score.by_layer.shape == (3,)
    config = tiny_entity_run(tiny_task())
    from dataclasses import replace

    one = build_model(
        replace(config.model, n_layers=1),
        d_vocab=config.task.d_vocab,
        d_vocab_out=config.task.d_vocab_out,
        n_ctx=3,
    )
    one.eval()
    task = build_task(config.task)
    assert circuit_score(get_family(task.kind), one, task, n_examples=50).score == 0.0


def test_mediation_known_answers(two_hop):
    from probes.patching import mediation

    model, task = two_hop
    cf = counterfactuals(get_family(task.kind), task, sample_examples(task, n=40), swap="head")
    clean_answer = task.labels[cf.index]
    # a run patched from itself: no effect at all
    same = mediation(model, cf.clean_tokens, cf.clean_tokens, clean_answer, cf.answer, position=1)
    assert same.total == 0.0 and (same.indirect.abs() < 1e-4).all()
    # patching the swapped token's embedding is the whole counterfactual run: IE = TE at layer 0;
    # the same position after the last layer is read by nothing (IE = 0)
    result = mediation(
        model, cf.clean_tokens, cf.tokens, clean_answer, cf.answer, position=cf.swapped_position
    )
    assert abs(result.indirect[0].item() - result.total) < 1e-3 * max(1.0, abs(result.total))
    assert abs(result.indirect[-1].item()) < 1e-3


def test_two_hop_specific_metric_ignores_disruption_and_counts_the_counterfactual_answer():
    from circuits.families.entity.two_hop import FAMILY, specific_metric

    task = build_task(tiny_task())
    index = sample_examples(task, n=10)
    cf = counterfactuals(get_family(task.kind), task, index, swap="head")
    t, t_alt = task.labels[cf.index], cf.answer
    metric = specific_metric(FAMILY.vocab(task), t, t_alt)
    rows = torch.arange(len(t))
    clean = torch.randn(len(t), task.tokens.max().item() + 1, dtype=torch.float64)
    disrupted = clean.clone()
    disrupted[rows, t] -= 5.0  # the clean answer falls; nothing moves toward t'
    assert torch.allclose(metric(clean), metric(disrupted))
    moved = clean.clone()
    moved[rows, t_alt] += 2.0
    assert torch.allclose(
        metric(clean) - metric(moved), torch.full((len(t),), 2.0, dtype=torch.float64)
    )


def test_two_hop_memorizer_scores_zero_where_the_plain_mediated_fraction_does_not(tmp_path):
    """Random answers for the training inferred facts (the memorization control): the model
    learns them by heart, and some of the head's identity reaches the last position through
    the r1 state. The plain logit-difference fraction reads that as mediation; the
    chance-corrected, significance-gated score does not."""
    from dataclasses import replace

    from interp.runs import load_run
    from interp.training import train
    from probes.patching import mediation

    config = tiny_entity_run(
        tiny_task(shuffle_labels=True, n_entities=30),
        steps=400,
        lr=1e-2,
        weight_decay=0.0,
        ckpt_every=100,
    )
    config = replace(config, model=replace(config.model, n_layers=3))
    train(config, tmp_path / "mem", progress=False)
    run = load_run(tmp_path / "mem")
    rows = run.metrics
    assert rows[-1]["train_inferred_acc"] > 0.95 and rows[-1]["test_id_acc"] < 0.2
    assert max(r["circuit_score"] for r in rows) <= 0.05
    task = run.task
    cf = counterfactuals(get_family(task.kind), task, sample_examples(task, n=300), swap="head")
    plain = mediation(
        run.model_at(run.steps[-1]), cf.clean_tokens, cf.tokens, task.labels[cf.index], cf.answer, 1
    )
    assert float(plain.indirect[1:-1].max()) / max(plain.total, len(cf.index)) > 0.1
