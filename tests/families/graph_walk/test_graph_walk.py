"""Random-walk data and its known answers: stationary distribution, entropy rate, sampled walks
that follow the transition rule, and the add-½ count-based learner's excess loss against its
asymptotic formula (n = 128, m = 640: 576/D nats)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuits.families.graph_walk.limits import (
    asymptotic_kt_excess,
    kt_excess_loss,
    transition_counts,
)
from circuits.families.graph_walk.walks import (
    GraphError,
    barabasi_albert,
    erdos_renyi,
    from_edges,
    read_edge_list,
    sample_walks,
)


@pytest.mark.parametrize("kappa", [0.0, 1.0, -0.5])
def test_stationary_distribution_is_stationary_and_entropy_matches_the_formula(kappa):
    graph = barabasi_albert(60, 2, seed=1, kappa=kappa)
    pi, P = graph.stationary, graph.transition
    assert np.allclose(pi @ P, pi, atol=1e-12) and np.isclose(pi.sum(), 1.0)
    assert np.allclose(P.sum(1), 1.0) and ((P > 0) == (P.T > 0)).all()  # undirected
    if kappa == 0.0:
        k = graph.degrees
        assert np.allclose(pi, k / k.sum())
        assert graph.entropy_rate() == pytest.approx(float((pi * np.log(k)).sum()), abs=1e-12)


def test_sampled_walks_follow_the_rule_and_their_loss_is_the_entropy_rate():
    graph = erdos_renyi(40, 120, seed=3, kappa=0.5)
    walks = sample_walks(graph, 400, 500, torch.Generator().manual_seed(0))
    P = graph.transition
    src, dst = walks[:, :-1].reshape(-1).numpy(), walks[:, 1:].reshape(-1).numpy()
    assert (P[src, dst] > 0).all()  # every step is along an edge
    counts = transition_counts(walks, graph.n)
    visits = counts.sum(1, keepdims=True)
    z = (counts / visits - P) / np.sqrt(np.maximum(P * (1 - P), 1e-12) / visits)
    assert np.abs(z).max() < 5  # every transition frequency within 5 standard errors
    starts = np.bincount(walks[:, 0].numpy(), minlength=graph.n) / len(walks)
    assert np.abs(starts - graph.stationary).max() < 0.04  # starts from π
    nll = -np.log(P[src, dst])
    assert nll.mean() == pytest.approx(graph.entropy_rate(), abs=4 * nll.std() / np.sqrt(len(nll)))


def test_the_numpy_step_loop_draws_what_searchsorted_on_the_same_uniforms_draws():
    from circuits.families.graph_walk.walks import neighbour_table, walks_from

    graph = barabasi_albert(50, 3, seed=2, kappa=1.0)  # unequal probabilities per row
    transition = torch.as_tensor(graph.transition)
    neighbours, cumulative = neighbour_table(transition)
    walks = walks_from(
        transition, torch.as_tensor(graph.stationary), 64, 30, torch.Generator().manual_seed(7)
    )
    generator = torch.Generator().manual_seed(7)  # the reference: torch.searchsorted per step
    current = torch.multinomial(torch.as_tensor(graph.stationary), 64, True, generator=generator)
    uniforms = torch.rand(29, 64, 1, generator=generator, dtype=torch.float64)
    expected = [current]
    for t in range(29):
        slot = torch.searchsorted(cumulative[current], uniforms[t]).clamp_max_(
            neighbours.shape[1] - 1
        )
        current = neighbours[current[:, None], slot].squeeze(1)
        expected.append(current)
    assert torch.equal(walks, torch.stack(expected, 1))


def test_count_based_learner_meets_its_asymptotic_excess_loss():
    graph = erdos_renyi(128, 640, seed=0)
    assert graph.n == 128 and graph.m == 640  # connected at this density
    assert asymptotic_kt_excess(graph, 3_200_000) == pytest.approx(576 / 3.2e6)
    walks = sample_walks(graph, 3200, 1001, torch.Generator().manual_seed(1))  # 3.2M steps
    counts = transition_counts(walks, graph.n)
    d = int(counts.sum())
    known = kt_excess_loss(graph, counts, known_neighbours=True)
    blind = kt_excess_loss(graph, counts, known_neighbours=False)
    assert known == pytest.approx(asymptotic_kt_excess(graph, d), rel=0.15)
    assert blind == pytest.approx(asymptotic_kt_excess(graph, d, known_neighbours=False), rel=0.15)
    assert blind > 10 * known


def test_edge_lists_name_the_bad_line_and_disconnected_graphs_keep_the_largest_component(
    tmp_path,
):
    path = tmp_path / "g.txt"
    path.write_text("# a path and a triangle\n0 1\n1 2\n5 6\n6 7\n7 5\n5 8\n")
    graph = read_edge_list(path)
    assert graph.n == 4 and graph.m == 4 and graph.dropped == 5  # 0-1-2 and ids 3, 4 unused
    for body, problem in [
        ("0 1\n1 x\n", ":2: expected two node ids"),
        ("0 0\n", ":1: self-loop"),
        ("0 1\n1 0\n", ":2: edge 1-0 listed twice"),
    ]:
        path.write_text(body)
        with pytest.raises(GraphError, match=problem):
            read_edge_list(path)
    with pytest.raises(GraphError, match="no edge to walk"):
        from_edges(3, [])
