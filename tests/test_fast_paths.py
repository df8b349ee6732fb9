"""Fast paths equal their references: activations without hooks, FFT neuron clusters, the analysis."""

from __future__ import annotations

import math

import pytest
import torch

from circuits import analyze, fourier
from circuits.activations import final_position_activations, final_position_activations_hooked
from interp.config import ModelConfig, TaskConfig
from interp.model import answer_activations, build_model, supports_answer_activations
from interp.runs import load_run
from interp.tasks import build_task
from tests.conftest import randomize_weights



@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64),
        ModelConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, normalization="LN", act_fn="gelu"),
    ],
)
def test_answer_activations_equal_run_with_cache(config):
    model = build_model(config, d_vocab=14, d_vocab_out=13, n_ctx=3)
    randomize_weights(model)
    model.eval()
    tokens = build_task(TaskConfig(p=13)).tokens
    assert supports_answer_activations(model)
    fast = final_position_activations(model, tokens)
    hooked = final_position_activations_hooked(model, tokens, batch_size=50)  # several batches
    for name in fast.__dataclass_fields__:
        torch.testing.assert_close(getattr(fast, name), getattr(hooked, name), rtol=1e-5, atol=1e-5, msg=name)
    assert set(answer_activations(model, tokens[:3])) == set(fast.__dataclass_fields__)


@pytest.mark.parametrize("p", [5, 6, 8, 17, 24])
def test_fft_block_energies_equal_the_basis_transform(p):
    torch.manual_seed(p)
    x = torch.randn(p, p, 12, dtype=torch.float64)
    grid = torch.arange(p, dtype=torch.float64)
    for n in range(0, 12, 2):  # planted single-frequency neurons, including k = p // 2
        k = 1 + n % (p // 2)
        x[:, :, n] += 4 * torch.cos(2 * math.pi * k * (grid[:, None] + grid[None, :]) / p + n)
    centered = x - x.mean(dim=(0, 1), keepdim=True)
    block_fft, total_fft = fourier._block_energies_fft(centered)
    block_ref, total_ref = fourier._block_energies_einsum(centered, fourier.fourier_basis(p))
    torch.testing.assert_close(block_fft, block_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(total_fft, total_ref, rtol=1e-10, atol=1e-10)


def test_nonstandard_basis_takes_the_reference_path():
    p = 7
    basis = fourier.fourier_basis(p)
    assert fourier._is_fourier_basis(basis) and fourier._is_fourier_basis(basis.float())
    assert not fourier._is_fourier_basis(basis.flip(0))


def test_analysis_rows_equal_the_hooked_reference(tiny_run, monkeypatch):
    run = load_run(tiny_run)
    fast = analyze.analyze_run(run, ("fourier", "attention", "attribution"))
    monkeypatch.setattr(analyze, "final_position_activations", final_position_activations_hooked)
    monkeypatch.setattr(fourier, "_is_fourier_basis", lambda basis: False)
    reference = analyze.analyze_run(run, ("fourier", "attention", "attribution"))
    assert fast.key_frequencies == reference.key_frequencies
    for row_fast, row_ref in zip(fast.rows, reference.rows, strict=True):
        assert row_fast.keys() == row_ref.keys()
        for key, value in row_ref.items():
            if isinstance(value, float):
                assert row_fast[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            else:
                assert row_fast[key] == value, key
