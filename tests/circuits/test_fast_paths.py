"""Fast paths equal their references: activations without hooks, FFT neuron clusters, the
analysis."""

from __future__ import annotations

import math

import pytest
import torch

from circuits.analyses.activations import (
    final_position_activations,
    final_position_activations_hooked,
)
from circuits.families.modular import fourier
from circuits.pipeline import analyze
from interp.config import ModelConfig, task_config
from interp.model import answer_activations, build_model, supports_answer_activations
from interp.runs import load_run
from interp.tasks import build_task
from tests.conftest import randomize_weights


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64),
        ModelConfig(
            n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, normalization="LN", act_fn="gelu"
        ),
    ],
)
def test_answer_activations_equal_run_with_cache(config):
    model = build_model(config, d_vocab=14, d_vocab_out=13, n_ctx=3)
    randomize_weights(model)
    model.eval()
    tokens = build_task(task_config(p=13)).tokens
    assert supports_answer_activations(model)
    fast = final_position_activations(model, tokens)
    hooked = final_position_activations_hooked(model, tokens, batch_size=50)  # several batches
    for name in fast.__dataclass_fields__:
        torch.testing.assert_close(
            getattr(fast, name), getattr(hooked, name), rtol=1e-5, atol=1e-5, msg=name
        )
    assert set(answer_activations(model, tokens[:3])) == set(fast.__dataclass_fields__)


def test_one_layer_tables_without_residual_give_the_same_logits():
    """attribution=False (the --fourier path) gets the logits from post @ (W_U W_out) instead."""
    model = build_model(
        ModelConfig(d_model=32, n_heads=4, d_head=8, d_mlp=64), d_vocab=14, d_vocab_out=13, n_ctx=3
    )
    randomize_weights(model)
    model.eval()
    tokens = build_task(task_config(p=13)).tokens
    with torch.inference_mode():
        full = answer_activations(model, tokens)
        lean = answer_activations(model, tokens, attribution=False)
        hooked = final_position_activations_hooked(model, tokens)
    assert not {"z", "mlp_out", "resid_final"} & set(lean)
    torch.testing.assert_close(lean["logits"], hooked.logits, rtol=1e-5, atol=1e-5)
    for name in ("embed", "pattern", "mlp_post"):
        torch.testing.assert_close(lean[name], full[name], rtol=1e-5, atol=1e-5, msg=name)


def test_float32_cluster_energies_match_float64():
    """The analysis passes float32 activations; its block energies match the float64 ones."""
    p = 31
    torch.manual_seed(0)
    grid = torch.arange(p, dtype=torch.float64)
    x = torch.relu(
        torch.randn(p, p, 16, dtype=torch.float64)
        + 3 * torch.cos(2 * math.pi * 5 * (grid[:, None] + grid[None, :]) / p)[..., None]
    )
    x += 50.0  # a large mean: the total must not lose the variance to cancellation
    block64, total64 = fourier._block_energies_fft(x)
    block32, total32 = fourier._block_energies_fft(x.float())
    torch.testing.assert_close(block32 / total32, block64 / total64, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(total32, total64, rtol=1e-4, atol=0)


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
    assert fourier.is_fourier_basis(basis) and fourier.is_fourier_basis(basis.float())
    assert not fourier.is_fourier_basis(basis.flip(0))


def test_analysis_rows_equal_the_hooked_reference(tiny_run, monkeypatch):
    run = load_run(tiny_run)
    fast = analyze.analyze_run(run, ("fourier", "attention", "attribution"))
    from circuits.families.modular import analysis as modular_analysis

    monkeypatch.setattr(
        modular_analysis, "final_position_activations", final_position_activations_hooked
    )
    monkeypatch.setattr(fourier, "is_fourier_basis", lambda basis: False)
    reference = analyze.analyze_run(run, ("fourier", "attention", "attribution"))
    assert fast.key_frequencies == reference.key_frequencies
    for row_fast, row_ref in zip(fast.rows, reference.rows, strict=True):
        assert row_fast.keys() == row_ref.keys()
        for key, value in row_ref.items():
            if isinstance(value, float):
                assert row_fast[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
            else:
                assert row_fast[key] == value, key


def test_parallel_checkpoint_workers_equal_the_serial_loop(tiny_run):
    run = load_run(tiny_run)
    serial = analyze.analyze_run(run, ("fourier", "attention", "attribution"), workers=1)
    threads = torch.get_num_threads()
    parallel = analyze.analyze_run(run, ("fourier", "attention", "attribution"), workers=3)
    assert torch.get_num_threads() == threads  # restored after the parallel map
    assert parallel.steps == serial.steps == sorted(serial.steps)
    for row_par, row_ser in zip(parallel.rows, serial.rows, strict=True):
        assert row_par.keys() == row_ser.keys()
        for key, value in row_ser.items():
            assert (
                row_par[key] == pytest.approx(value, rel=1e-6, abs=1e-9)
                if isinstance(value, float)
                else row_par[key] == value
            ), key


def test_per_example_cross_entropy_keeps_tiny_losses_in_float32():
    from interp.metrics import per_example_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(200, 37, dtype=torch.float64) * 3
    labels = torch.randint(0, 37, (200,))
    labels[:3] = -1
    reference = -logits.log_softmax(-1).gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
    for dtype in (torch.float64, torch.float32):
        nll, predicted = per_example_cross_entropy(logits.to(dtype), labels)
        assert nll.dtype == torch.float64 and nll[:3].isnan().all()
        torch.testing.assert_close(nll[3:], reference[3:], rtol=1e-5, atol=1e-6)
        assert torch.equal(predicted, logits.to(dtype).argmax(-1))
    # A confident, right answer: loss = log(1 + 36 e^-25) ~ 5e-10, which float32 log_softmax loses.
    confident = torch.zeros(1, 37)
    confident[0, 5] = 25.0
    exact = math.log1p(36 * math.exp(-25.0))
    nll, _ = per_example_cross_entropy(confident, torch.tensor([5]))
    assert float(nll[0]) == pytest.approx(exact, rel=1e-5)
    assert float(-confident.log_softmax(-1)[0, 5]) == 0.0  # what a float32 log_softmax gives


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc mallopt")
def test_keep_freed_memory_takes_effect_on_glibc():
    import platform

    from interp.memory import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
