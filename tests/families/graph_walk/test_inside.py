"""Inside a walk model: the per-node excess adds up to the excess (0 for the true chain,
log n − log k per node for the uniform guess), groups of nodes split it exactly, a resampled
past is a real walk ending at the current node, and context dependence is 0 for a model that
reads only the current node and clearly positive on the corpus a model memorized."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import interp
from circuits.families.graph_walk import inside
from circuits.families.graph_walk.task import walk_graph
from tests.conftest import walk_config
from tests.families.graph_walk.markov import markov_teacher


@pytest.fixture(scope="module")
def graph():
    return walk_graph(walk_config("fixed").task)


def test_node_excess_is_zero_for_the_chain_and_log_n_over_k_for_the_uniform_guess(graph):
    P = graph.transition
    current = torch.randint(graph.n, (3000,), generator=torch.Generator().manual_seed(0))
    true = inside.node_excess(torch.log(torch.as_tensor(P).clamp_min(1e-300))[current], current, P)
    assert np.nanmax(np.abs(true.kl)) < 1e-12 and abs(true.total) < 1e-12
    uniform = inside.node_excess(torch.full((3000, graph.n), -np.log(graph.n)), current, P)
    expected = np.log(graph.n) - np.log(graph.degrees)
    assert np.allclose(uniform.kl, expected)
    share = np.bincount(current.numpy(), minlength=graph.n) / 3000
    assert uniform.total == pytest.approx(float((share * expected).sum()))

    # The add-½ learner knowing the support (q = 0 off it: log q = −inf is no obstacle), on
    # current nodes in exactly the stationary shares: the sum is its exact excess over H.
    from circuits.families.graph_walk.limits import kt_excess_loss, kt_predictor, transition_counts
    from circuits.families.graph_walk.walks import sample_walks

    walks = sample_walks(graph, 30, 20, torch.Generator().manual_seed(2))
    counts = transition_counts(walks, graph.n)
    with np.errstate(divide="ignore"):
        log_kt = torch.as_tensor(np.log(kt_predictor(counts, P > 0)))
    stationary = torch.arange(graph.n).repeat_interleave(torch.as_tensor(graph.degrees).long())
    kt = inside.node_excess(log_kt[stationary], stationary, P)
    assert np.isfinite(kt.kl).all()
    assert kt.total == pytest.approx(kt_excess_loss(graph, counts, True), rel=1e-9)

    rows = inside.by_bins({"true": true, "uniform": uniform}, graph.degrees, 3, "degree")
    assert sum(r["nodes"] for r in rows) == graph.n
    assert sum(r["uniform contribution"] for r in rows) == pytest.approx(uniform.total)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    # Low-degree nodes are the uniform guess's worst: log n − log k falls with k.
    assert rows[0]["uniform kl"] > rows[-1]["uniform kl"]


def test_a_resampled_past_is_a_walk_of_the_graph_ending_at_the_current_node(graph):
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(graph.n, (500, 8), generator=generator)
    past = inside.resampled_past(tokens, graph.transition, generator)
    assert past.shape == tokens.shape and torch.equal(past[:, -1], tokens[:, -1])
    steps = graph.transition[past[:, :-1].numpy(), past[:, 1:].numpy()]
    assert (steps > 0).all()
    assert not torch.equal(past[:, :-1], tokens[:, :-1])


def test_context_dependence_is_zero_for_a_markov_model_and_positive_on_a_memorized_corpus(
    graph, tmp_path
):
    run_dir = tmp_path / "memorizer"
    interp.train(walk_config("fixed", steps=300), run_dir, progress=False)
    run = interp.load_run(run_dir)
    corpus, corpus_next = run.task.split("train")
    test, test_next = run.task.split("test")

    markov = inside.predictor([markov_teacher(graph.transition)])
    clean = inside.context_dependence(markov, corpus, corpus_next[:, -1], graph.transition)
    assert abs(clean.kl) < 1e-9 and abs(clean.delta_loss) < 1e-9

    model = inside.predictor([run.model_at(run.steps[-1])])
    memorized = inside.context_dependence(model, corpus, corpus_next[:, -1], graph.transition)
    fresh = inside.context_dependence(model, test, test_next[:, -1], graph.transition)
    # Trained to a loss below H on 64 walks, it reads their past: resampling it costs loss
    # on those walks, well beyond its standard error, and more than on new walks.
    assert memorized.delta_loss > 3 * memorized.delta_loss_se
    assert memorized.kl > 0.05 and memorized.delta_loss > fresh.delta_loss
