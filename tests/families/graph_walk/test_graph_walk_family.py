"""The graph-walk family trains end to end: its excess-loss measure (paired with the true
log-probabilities) falls towards 0 as a tiny model learns the walk, fresh walks resume
exactly, and the fixed-corpus mode trains on (and memorizes) its stored walks."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import interp
from circuits.families.graph_walk.task import walk_graph
from tests.conftest import walk_config


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_excess_loss_falls_towards_the_entropy_rate(tmp_path):
    config = walk_config()
    interp.train(config, tmp_path / "run", progress=False)
    metrics = rows(tmp_path / "run")
    graph = walk_graph(config.task)
    first, last = metrics[0], metrics[-1]
    assert last["entropy_rate"] == pytest.approx(graph.entropy_rate())
    # The paired excess equals the sampled loss minus the walks' own log-loss, so it is
    # close to test_loss - H; at init it is about log(n) - H, at the end small.
    assert first["excess_loss"] > 0.5 and last["excess_loss"] < 0.15
    assert last["excess_loss"] == pytest.approx(last["test_loss"] - graph.entropy_rate(), abs=0.1)
    assert 0 < last["excess_loss_se"] < 0.05
    # The loop counts the tokens it trained on: batch 32 × context 8 per step.
    assert [r["tokens_seen"] for r in metrics] == [r["step"] * 32 * 8 for r in metrics]


def test_collapse_is_read_off_the_training_loss_not_the_capped_accuracy():
    from interp.collapse import detect_collapses
    from interp.registry import get_family
    from interp.tasks import build_task

    config = walk_config()
    rule = get_family("graph_walk").collapse_rule(build_task(config.task))
    assert rule.metric == "train_loss" and not rule.higher_is_better
    # The loss climbs back towards log n while the accuracy (capped near 1/k) barely moves.
    losses = [2.5, 1.6, 1.4, 1.41, 1.9, 2.0, 2.1, 2.2]
    table = [
        {"step": 50 * i, "train_loss": v, "train_acc": 0.3 - 0.01 * (v > 1.8)}
        for i, v in enumerate(losses)
    ]
    (event,) = detect_collapses(table, rule)
    assert (event.first_step, event.step, event.best) == (200, 300, 1.4)
    noisy = [{**r, "train_loss": 1.4 + 0.1 * (i % 2)} for i, r in enumerate(table[2:])]
    assert detect_collapses(noisy, rule) == []


def test_fresh_walks_resume_exactly_and_the_fixed_corpus_trains(tmp_path):
    whole = tmp_path / "whole"
    interp.train(walk_config(steps=100), whole, progress=False)
    cut = tmp_path / "cut"
    interp.train(walk_config(steps=50), cut, progress=False)
    config = json.loads((cut / "config.json").read_text())
    config["train"]["steps"] = 100
    (cut / "config.json").write_text(json.dumps(config))
    interp.train(None, cut, resume=True, progress=False)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in rows(whole)]
    assert [{k: v for k, v in r.items() if k != "time_s"} for r in rows(cut)] == strip

    fixed = tmp_path / "fixed"
    interp.train(walk_config("fixed", steps=200), fixed, progress=False)
    run = interp.load_run(fixed)
    assert len(run.task.splits["train"]) == 64  # the stored corpus
    # 512 tokens for 100 epochs without weight decay: the model memorizes its corpus, with a
    # training loss below the entropy rate (impossible without memorizing those walks) while
    # its excess loss on fresh test walks grows.
    last = rows(fixed)[-1]
    assert last["train_loss"] < last["entropy_rate"] < last["test_loss"]
    assert last["excess_loss"] > rows(fixed)[0]["excess_loss"]


def test_learned_transitions_are_exact_for_the_true_model_and_the_analysis_reports(tmp_path):
    import numpy as np
    import torch

    from circuits.families.graph_walk.analysis import learned_transitions
    from interp.cli import main

    config = walk_config(steps=100)
    graph = walk_graph(config.task)
    P = torch.as_tensor(graph.transition)
    current = torch.randint(graph.n, (500,), generator=torch.Generator().manual_seed(0))
    kl, visits = learned_transitions(
        torch.log(P.clamp_min(1e-30))[current], current, graph.transition
    )
    seen = visits > 0
    assert np.allclose(kl[seen], 0.0, atol=1e-9) and np.isnan(kl[~seen]).all()
    uniform = torch.zeros(len(current), graph.n)  # q = 1/n: KL = log n - H(P_i)
    kl, _ = learned_transitions(uniform, current, graph.transition)
    k = graph.degrees
    if graph.kappa == 0:
        assert np.allclose(kl[seen], (np.log(graph.n) - np.log(k))[seen])

    interp.train(config, tmp_path / "run", progress=False)
    assert main(["analyze", str(tmp_path / "run"), "-q"]) == 0
    table = (tmp_path / "run" / "analysis" / "table.csv").read_text()
    assert "kl_node_mean" in table and "attn/L0H0->prev" in table
    assert "dla/L0 MLP" in table and "dla/total" in table
    # The family's own measure is in the analysis too: the phases are read off it.
    assert "excess_loss" in table.splitlines()[0].split(",")
    summary = json.loads((tmp_path / "run" / "analysis" / "summary.json").read_text())
    assert summary["phases"]["memorization"]["start"] == 0
    html = (tmp_path / "run" / "analysis" / "report.html").read_text()
    assert "Learned transitions" in html and "Views not in this report" not in html
    assert "Direct logit attribution of the next node" in html


def test_next_node_attribution_adds_up_and_the_patching_design_corrupts_the_current_node(
    tmp_path,
):
    from dataclasses import replace

    import torch

    from circuits.families.graph_walk.analysis import next_node_attribution
    from interp.registry import get_family

    config = walk_config(steps=150)
    config = replace(config, model=replace(config.model, normalization="none"))
    interp.train(config, tmp_path / "run", progress=False)
    run = interp.load_run(tmp_path / "run")
    model = run.model_at(run.steps[-1])
    tokens, labels = run.task.split("test")
    result = next_node_attribution(model, tokens, labels)
    # Without LayerNorm the components (embeddings, heads, biases, MLPs) add up to the
    # model's centered logit of the true next node, up to the unembedding bias.
    b_U = model.b_U.double()
    bias = float((b_U[labels.reshape(-1)] - b_U.mean()).mean())
    assert float(result.mean.sum()) + bias == pytest.approx(result.total, abs=1e-3)
    assert result.total > 1.0  # a trained model puts its logit on the true next node

    design = get_family("graph_walk").patching_design(run.task, 64, seed=1)
    assert torch.equal(design.clean[:, :-1], design.corrupt[:, :-1])
    assert (design.clean[:, -1] != design.corrupt[:, -1]).all()
    assert torch.equal(design.answer, labels[:64, -1])

    def metric(inputs):
        with torch.no_grad():
            logp = torch.log_softmax(model(inputs)[:, design.position].double(), -1)
        return logp.gather(1, design.answer[:, None]).mean()

    # The trained model reads the current node: corrupting it costs most of the metric.
    assert metric(design.clean) > metric(design.corrupt) + 1.0


def test_llc_of_a_walk_model_counts_every_predicted_token(tmp_path, monkeypatch):
    import circuits.analyses.llc as llc

    config = walk_config(steps=200)
    interp.train(config, tmp_path / "run", progress=False)
    seen = []
    original = llc.sample_chains

    def recording(loss_of, params, n, settings=llc.LLCSettings(), resume=None):
        seen.append(n)
        short = replace(
            settings,
            chains=min(settings.chains, 2),
            steps=min(settings.steps, 60),
            burnin=min(settings.burnin, 30),
        )
        return original(loss_of, params, n, short, resume)

    monkeypatch.setattr(llc, "sample_chains", recording)
    run = interp.load_run(tmp_path / "run")
    from circuits.pipeline.analyze import analyze_run

    result = analyze_run(run, ("llc",), workers=1, figures=False)
    # The training split here is 64 held-out walks of 8 predicted tokens each.
    assert seen and set(seen) == {64 * 8}
    values = [c.row["llc"] for c in result.checkpoints if c.row["llc"] == c.row["llc"]]
    assert 2 <= len(values) <= len(seen)  # the step-size probe calls the estimator too
    assert values[-1] > 0  # a trained model sits at a minimum: the chains climb


def test_walks_train_with_the_fused_optimizer_and_others_with_the_exact_loop(tmp_path):
    from interp.training import Trainer
    from tests.conftest import tiny_config

    walk = Trainer(walk_config(steps=10), tmp_path / "walk", progress=False)
    assert walk.optimizer.param_groups[0]["fused"] is True
    modular = Trainer(tiny_config(), tmp_path / "modular", progress=False)
    group = modular.optimizer.param_groups[0]
    assert group["foreach"] is True and not group["fused"]


def test_the_walk_summary_says_the_walks_own_facts(tmp_path, capsys):
    """`interp analyze` on a walk run reports H, the final excess ± SE and the two count-based
    learners on the run's tokens, and no modular fields (key frequencies, circuit_score leads)."""
    from circuits.families.graph_walk import limits
    from interp.cli import main

    config = walk_config(steps=100)
    interp.train(config, tmp_path / "run", progress=False)
    assert main(["analyze", str(tmp_path / "run"), "--no-figures", "--quiet"]) == 0
    printed = capsys.readouterr().out
    info = json.loads((tmp_path / "run" / "analysis" / "summary.json").read_text())
    graph = walk_graph(config.task)
    assert "key_frequencies" not in info and "circuit_score" not in " ".join(info["leads"])
    assert info["entropy_rate"] == pytest.approx(graph.entropy_rate())
    last = rows(tmp_path / "run")[-1]
    assert info["excess_loss"] == pytest.approx(last["excess_loss"], rel=1e-6)
    assert info["tokens_trained"] == 100 * 32 * 8  # every transition the run trained on
    counts = limits.trained_counts(config, 100)
    assert info["count_excess_graph"] == pytest.approx(limits.kt_excess_loss(graph, counts, True))
    assert 0 < info["count_excess_graph"] < info["count_excess_all"]
    assert f"entropy rate H {graph.entropy_rate():.4f} nats" in printed
    assert "knowing the neighbours" in printed and "leads: excess_loss<=0.1" in printed
