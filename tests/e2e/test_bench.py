"""The benchmark's helpers (not its timings: no timed assertions in the test suite)."""

from __future__ import annotations

import json

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
    from circuits.pipeline.analyze import analyze_run
    from interp.runs import load_run

    run_dir = bench.synthetic_run(7, 3, root=tmp_path)
    run = load_run(run_dir)
    assert run.steps == [0, 1, 2]
    curve = bench.analyze_with_curve(run_dir)
    assert len(curve.times) == 4 and curve.times == sorted(curve.times)
    assert len(analyze_run(run, ("fourier",)).rows) == 3


def test_anchor_steps_are_the_median_over_seeds(tmp_path):
    """(a)'s steps: the median over project-trainer anchor runs (JSON lines + --anchor-run)."""
    import json

    lines = [
        {"recipe": "mod-add", "seed": 1000, "grok_step": 30_000},
        {"recipe": "mod-add", "seed": 1001, "grok_step": 10_000},
        {"recipe": "mod-add-fast", "seed": 999, "grok_step": 400, "seconds": 60.0},
    ]
    results = tmp_path / "grok.jsonl"
    results.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = tmp_path / "anchor"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": {"seed": 999}}))
    (run / "metrics.jsonl").write_text(
        "".join(
            json.dumps({"step": s, "test_acc": a}) + "\n"
            for s, a in [(0, 0.0), (20_000, 0.98), (22_700, 0.995)]
        )
    )
    bench.ROWS.clear()
    bench.time_to_grok(results, run, 0, reference_rate=2.0, project_rate=8.0)
    rows = {measurement: value for _section, measurement, value, _note in bench.ROWS}
    assert rows["(a) anchor recipe, median of 3 seed(s)"] == f"22700 steps / {22_700 / 2.0:.0f} s"
    assert rows["wall-clock speed-up (a) / (b) (target >= 10x)"] == f"{22_700 / 2.0 / 60.0:.1f}x"


def test_time_to_grok_trainer_stops_at_the_first_evaluation_over_target(tmp_path):
    from experiments.benchmarks.grok import time_to_grok_trainer
    from tests.conftest import tiny_config

    config = tiny_config(train__steps=40, task__val_frac=0.3, train__stop_at_val_acc=0.5)
    never = time_to_grok_trainer(config, tmp_path / "never", target=1.01)
    assert (
        never["grok_step"] is None and never["steps_run"] == 40
    )  # the preset's own early stop is off
    rows = [
        json.loads(line) for line in (tmp_path / "never" / "metrics.jsonl").read_text().splitlines()
    ]
    target = max(r["test_acc"] for r in rows)
    first = min(r["step"] for r in rows if r["test_acc"] >= target)
    hit = time_to_grok_trainer(config, tmp_path / "hit", target=target)
    assert hit["grok_step"] == first and hit["steps_run"] == first
