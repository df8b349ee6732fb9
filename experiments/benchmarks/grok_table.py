"""Time-to-grok rows of the benchmark table: steps and wall-clock to 99 % test accuracy of the
anchor recipe and of `mod-add-fast`, from finished runs (`experiments.benchmarks.grok`) or
runs made here, with the anchor's wall-clock extrapolated when no anchor run finished."""

from __future__ import annotations

import json
from pathlib import Path

from experiments.benchmarks.table import median, row
from interp.presets import PRESETS


def grok_from_run(run_dir: Path, target: float = 0.99) -> tuple[int | None, int]:
    """(first step with test_acc >= target, last step) from a run's metrics.jsonl."""
    last, first = 0, None
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        last = max(last, r["step"])
        if first is None and r.get("test_acc", 0) >= target:
            first = r["step"]
    return first, last


def time_to_grok(
    results: Path | None,
    anchor_run: Path | None,
    grok_seeds: int,
    reference_rate: float,
    project_rate: float,
) -> None:
    from experiments.benchmarks.grok import time_to_grok_trainer

    lines = (
        [json.loads(x) for x in results.read_text().splitlines()]
        if results and results.exists()
        else []
    )
    fast = [r for r in lines if r["recipe"] == "mod-add-fast" and not r.get("overrides")]
    for seed in range(999, 999 + grok_seeds):
        config = PRESETS["mod-add-fast"].with_overrides([f"model.seed={seed}"])
        r = time_to_grok_trainer(config, Path(f"/tmp/interp_bench_grok_s{seed}"))
        r.update(recipe="mod-add-fast", seed=seed)
        fast.append(r)
    fast_secs = fast_steps = None
    if fast:
        done = [r for r in fast if r["grok_step"] is not None]
        seeds = "; ".join(
            f"seed {r['seed']}: {r['grok_step']} steps, {r['seconds']:.0f} s" for r in fast
        )
        if done:
            fast_secs = median([r["seconds"] for r in done])
            fast_steps = median([r["grok_step"] for r in done])
            row(
                "grok",
                f"(b) mod-add-fast, median of {len(done)} seed(s) (of {len(fast)} run)",
                f"{fast_steps:.0f} steps / {fast_secs:.0f} s",
                f"measured, wall-clock incl. checkpoints + evaluation every 25 steps ({seeds})",
            )
    anchors = [r for r in lines if r["recipe"] == "anchor" and r["grok_step"] is not None]
    anchor_secs = anchor_steps = None
    lower_bound = False
    if anchors:
        anchor_secs = median([r["seconds"] for r in anchors])
        anchor_steps = median([r["grok_step"] for r in anchors])
        row(
            "grok",
            f"(a) anchor recipe in the reference, median of {len(anchors)} seed(s)",
            f"{anchor_steps:.0f} steps / {anchor_secs:.0f} s",
            "measured",
        )
    else:
        # Steps from project-trainer runs of `mod-add` (the anchor recipe: same initial weights and
        # logits as the reference, tested): JSON lines of recipe "mod-add" and/or --anchor-run.
        proxy = {
            r["seed"]: r["grok_step"]
            for r in lines
            if r["recipe"] == "mod-add" and not r.get("overrides")
        }
        unfinished = None
        if anchor_run is not None and (anchor_run / "metrics.jsonl").exists():
            first, last = grok_from_run(anchor_run)
            seed = json.loads((anchor_run / "config.json").read_text())["model"]["seed"]
            proxy[seed] = first
            unfinished = None if first is not None else last
        done = {seed: step for seed, step in proxy.items() if step is not None}
        if done:
            anchor_steps = median(list(done.values()))
            anchor_secs = anchor_steps / reference_rate
            seeds = "; ".join(f"seed {seed}: {step}" for seed, step in sorted(done.items()))
            row(
                "grok",
                f"(a) anchor recipe, median of {len(done)} seed(s)",
                f"{anchor_steps:.0f} steps / {anchor_secs:.0f} s",
                f"steps measured in the project trainer ({seeds}; same init and function as the "
                "reference); "
                f"seconds EXTRAPOLATED = steps / reference {reference_rate:.2f} steps/s measured "
                "above",
            )
        elif unfinished is not None:
            lower_bound = True
            anchor_steps, anchor_secs = unfinished, unfinished / reference_rate
            row(
                "grok",
                "(a) anchor recipe",
                f">{anchor_steps} steps / >{anchor_secs:.0f} s",
                f"still < 99 % test acc at step {unfinished} in {anchor_run}; seconds extrapolated",
            )
    if fast_secs and anchor_secs:
        sign = ">=" if lower_bound else ""
        row(
            "grok",
            "wall-clock speed-up (a) / (b) (target >= 10x)",
            f"{sign}{anchor_secs / fast_secs:.1f}x",
            "(b) measured under its own load; (a) as above",
        )
        if anchor_steps and fast_steps:
            row(
                "grok",
                "  same, load-independent: step ratio x per-step speed ratio",
                f"{sign}{anchor_steps / fast_steps * project_rate / reference_rate:.1f}x",
                f"({anchor_steps}/{fast_steps:.0f}) x ({project_rate:.2f}/{reference_rate:.2f}); "
                "excludes (b)'s evaluation",
            )
