"""The benchmark's helpers (not its timings: no timed assertions in the test suite)."""

from __future__ import annotations

from experiments.benchmarks import bench
from interp.presets import PRESETS


def test_flop_count_of_the_shortcut_is_a_fraction_of_the_full_forward():
    config = PRESETS["mod-add"]
    short = bench.step_flops(config, 3830, all_positions=False)
    full = bench.step_flops(config, 3830, all_positions=True)
    assert 3.0 < full / short < 4.5  # answer position only vs all 3 positions (+ Q/K/V tables)
    # MLP forward at the last position alone: 2 matmuls of 128 x 512 per example.
    assert short > 3 * 3830 * 2 * 2 * 128 * 512


def test_synthetic_run_is_analyzable(tmp_path):
    from circuits.analyze import analyze_run
    from interp.runs import load_run

    run_dir = bench.synthetic_run(7, 3, root=tmp_path)
    run = load_run(run_dir)
    assert run.steps == [0, 1, 2]
    curve = bench.analyze_with_curve(run_dir)
    assert len(curve.times) == 4 and curve.times == sorted(curve.times)
    assert len(analyze_run(run, ("fourier",)).rows) == 3
