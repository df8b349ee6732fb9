"""Fourier analysis against known answers: basis algebra, planted signals, a hand-built circuit."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.analyses.activations import final_position_activations
from circuits.families.modular import fourier
from interp.config import task_config
from interp.tasks import build_task
from tests.conftest import handbuilt_fourier_model


@pytest.mark.parametrize("p", [7, 12, 113])
def test_basis_is_orthonormal_with_documented_row_order(p):
    basis = fourier.fourier_basis(p)
    torch.testing.assert_close(basis @ basis.T, torch.eye(p, dtype=torch.float64))
    x = torch.arange(p, dtype=torch.float64)
    torch.testing.assert_close(basis[0], torch.full((p,), 1 / math.sqrt(p), dtype=torch.float64))
    cos3 = torch.cos(2 * math.pi * 3 * x / p)
    torch.testing.assert_close(basis[5], cos3 / cos3.norm())  # row 2k-1 = cos k
    assert fourier.basis_names(p)[5:7] == ["cos 3", "sin 3"]
    assert len(fourier.basis_names(p)) == p


def test_fft2d_equals_double_loop():
    p = 7
    basis = fourier.fourier_basis(p)
    x = torch.randn(p, p, 3, dtype=torch.float64)
    naive = torch.zeros(p, p, 3, dtype=torch.float64)
    for i in range(p):
        for j in range(p):
            for a in range(p):
                for b in range(p):
                    naive[i, j] += basis[i, a] * basis[j, b] * x[a, b]
    torch.testing.assert_close(fourier.fft2d(x, basis), naive)


def test_answer_directions_are_nandas_u_and_v_for_addition():
    p = 11
    task = build_task(task_config(p=p, train_frac=0.5))
    basis = fourier.fourier_basis(p)
    for k in (1, 3, 5):  # 5 = (p-1)/2: the frequency the original code skipped
        c, s = basis[2 * k - 1], basis[2 * k]
        u = (torch.outer(c, c) - torch.outer(s, s)).flatten() / math.sqrt(2)
        v = (torch.outer(s, c) + torch.outer(c, s)).flatten() / math.sqrt(2)
        dirs = fourier.answer_directions(task.labels, fourier.answer_group("add", p), [k])
        torch.testing.assert_close(dirs[0], u)
        torch.testing.assert_close(dirs[1], v)


def test_discrete_log_orders_the_multiplicative_group():
    group = fourier.answer_group("mul", 13)
    g = fourier.primitive_root(13)
    assert group.m == 12 and group.position[0] == -1
    for exponent in range(12):
        assert group.position[pow(g, exponent, 13)] == exponent


def test_planted_logit_table_restricted_and_excluded_loss():
    """A logit table cos(w_k(a+b-c)) is all key frequency: restricting keeps it, excluding kills
    it."""
    p, k = 23, 7
    task = build_task(task_config(p=p, train_frac=0.3))
    a, b = task.tokens[:, 0].double(), task.tokens[:, 1].double()
    c = torch.arange(p, dtype=torch.float64)
    logits = 8 * torch.cos(2 * math.pi * k * (a[:, None] + b[:, None] - c[None]) / p)
    group = fourier.answer_group("add", p)
    train, test = task.splits["train"], task.splits["test"]
    right = fourier.restricted_and_excluded_loss(
        logits, task.labels, train, test, fourier.answer_directions(task.labels, group, [k])
    )
    wrong = fourier.restricted_and_excluded_loss(
        logits, task.labels, train, test, fourier.answer_directions(task.labels, group, [k + 1])
    )
    full = torch.nn.functional.cross_entropy(logits[test], task.labels[test]).item()
    assert right.restricted_loss == pytest.approx(full, abs=1e-6)
    assert right.excluded_loss == pytest.approx(math.log(p), abs=1e-6)  # nothing left: uniform
    assert wrong.restricted_loss == pytest.approx(math.log(p), abs=1e-6)
    assert wrong.excluded_loss == pytest.approx(full, abs=1e-6)


def test_planted_neuron_signal_is_clustered_at_its_frequency():
    p = 17
    x = torch.arange(p, dtype=torch.float64)
    a, b = x[:, None], x[None, :]
    w = lambda k: 2 * math.pi * k / p  # noqa: E731
    neurons = torch.stack(
        [
            torch.cos(w(3) * a) * torch.cos(w(3) * b),  # freq 3
            torch.sin(w(8) * a) + torch.cos(w(8) * b),  # freq 8 = (p-1)/2
            torch.randn(p, p, dtype=torch.float64),  # noise: unclustered
        ],
        dim=-1,
    )
    clusters = fourier.neuron_clusters(neurons, fourier.fourier_basis(p))
    assert clusters.frequency.tolist() == [3, 8, -1]
    assert clusters.fraction_explained[0] == pytest.approx(1.0)


def test_gini_known_values():
    assert fourier.gini(torch.ones(10)) == pytest.approx(0.0)
    assert fourier.gini(torch.tensor([0.0, 0, 0, 1])) == pytest.approx(
        0.75
    )  # (n-1)/n for one spike


def test_handbuilt_fourier_model_is_recovered():
    p, keys = 31, [4, 9, 13]
    model = handbuilt_fourier_model(p, keys)
    task = build_task(task_config(p=p, train_frac=0.3))
    acts = final_position_activations(model, task.tokens)
    assert (acts.logits.argmax(-1) == task.labels).all()
    basis = fourier.fourier_basis(p)
    clusters = fourier.neuron_clusters(acts.mlp_post.reshape(p, p, -1), basis)
    assert sorted(fourier.key_frequencies_from_clusters(clusters, p)) == keys
    spectrum = fourier.embedding_spectrum(model.W_E, model.blocks[0].mlp.W_out @ model.W_U, basis)
    top_embed = spectrum.embed_freq_norms[1:].topk(3).indices + 1
    assert sorted(top_embed.tolist()) == keys
    assert spectrum.gini_embed > 0.8  # 6 of 31 rows non-zero
