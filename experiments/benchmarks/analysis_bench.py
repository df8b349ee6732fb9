"""Analysis benchmarks: throughput and memory of `interp analyze` on synthetic runs, against a
naive per-checkpoint loop, and with checkpoints analyzed in parallel (`bench.py` runs them)."""

from __future__ import annotations

import os
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from experiments.benchmarks.table import median, row
from interp.presets import PRESETS

# --------------------------------------------------------------------------------------
# Analysis throughput
# --------------------------------------------------------------------------------------


def synthetic_run(p: int, n_checkpoints: int, root: Path = Path("/tmp/interp_bench_runs")) -> Path:
    """A run folder of the mod-add shape with `n_checkpoints` checkpoints (cached).

    Weights: the preset's initial weights plus a small random walk. The analysis does the
    same work whatever the values, and training 400+ real checkpoints would take longer
    than the benchmark itself; `--analysis-run` analyzes a real run instead.
    """
    from interp import run_writer, runs
    from interp.model import build_model, state_dict
    from interp.tasks import build_task

    run_dir = root / f"p{p}_n{n_checkpoints}"
    if (run_dir / runs.MANIFEST_FILE).exists():
        return run_dir
    config = PRESETS["mod-add"].with_overrides([f"task.p={p}", f"train.steps={n_checkpoints - 1}"])
    run_dir.mkdir(parents=True, exist_ok=True)
    task = build_task(config.task)
    run_writer.write_header(run_dir, config, task)
    t = config.task
    weights = state_dict(
        build_model(config.model, d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
    )
    generator = torch.Generator().manual_seed(0)
    manifest = []
    for step in range(n_checkpoints):
        weights = {
            k: v + 1e-3 * torch.randn(v.shape, generator=generator) for k, v in weights.items()
        }
        manifest.append(run_writer.write_weights(run_dir, step, weights))
    run_writer.write_metrics(run_dir, [])
    run_writer.write_manifest(run_dir, manifest, [], task)
    return run_dir


class PeakRSS:
    """Peak resident memory during a block, sampled from /proc/self/statm every 5 ms."""

    def __enter__(self):
        self.peak = self.start = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _rss(self) -> int:
        try:
            return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


@dataclass
class Curve:
    times: list[float]  # seconds after the start at which each checkpoint finished
    rss: list[int]  # peak RSS so far (bytes) at each checkpoint


def analyze_with_curve(
    run_dir: Path, steps: list[int] | None = None, workers: int | None = None
) -> Curve:
    """`analyze_run(run, ("fourier",), workers=...)`, timing each checkpoint (instrumented, not
    changed)."""
    from circuits.families.modular import analysis as modular_analysis
    from circuits.pipeline import analyze
    from interp.runs import load_run

    run = load_run(run_dir)
    run.new_model()  # imports TransformerLens outside the timed region ("import excluded")
    curve = Curve([], [])
    original = modular_analysis.analyze_checkpoint
    with PeakRSS() as mem:
        start = time.perf_counter()

        def timed(*args, **kwargs):
            out = original(*args, **kwargs)
            curve.times.append(time.perf_counter() - start)
            curve.rss.append(mem.peak)
            return out

        modular_analysis.analyze_checkpoint = timed
        try:
            analyze.analyze_run(run, ("fourier",), steps=steps, workers=workers)
        finally:
            modular_analysis.analyze_checkpoint = original
    curve.times.insert(0, 0.0)  # the key-frequency pass before the first checkpoint is in times[1]
    return curve


def naive_analysis(run_dir: Path, n: int) -> float:
    """The loop without the project's reuse: per checkpoint a new model, a new Fourier basis and
    task context, TransformerLens run_with_cache on all p² inputs, the O(p³) basis transform."""
    from circuits.analyses.activations import final_position_activations_hooked
    from circuits.families.modular import analysis as modular_analysis
    from circuits.families.modular import fourier
    from circuits.pipeline.analyze import analyze_run
    from interp.runs import load_run

    run = load_run(run_dir)
    steps = run.steps[:n]
    saved = modular_analysis.final_position_activations, fourier.is_fourier_basis
    modular_analysis.final_position_activations = final_position_activations_hooked
    fourier.is_fourier_basis = lambda basis: False
    try:
        keys = analyze_run(run, ("fourier",), steps=steps[-1:]).key_frequencies
        start = time.perf_counter()
        for step in steps:
            ctx = modular_analysis.ModularContext(run)  # rebuilds the basis and task every time
            ctx.set_key_frequencies(keys)
            model = run.model_at(step)  # rebuilds the model every time
            modular_analysis.analyze_checkpoint(model, step, ctx, ("fourier",))
        return (time.perf_counter() - start) / len(steps)
    finally:
        modular_analysis.final_position_activations, fourier.is_fourier_basis = saved


def analysis_throughput(
    p_main: int,
    n_main: int,
    p_values: list[int],
    n_small: int,
    p_naive: int,
    n_naive: int,
    n_full: int,
    real_run: Path | None,
    p_full: int = 113,
    workers: int = 1,
    n_workers_row: int = 40,
) -> None:
    main = real_run or synthetic_run(p_main, n_main)
    label = f"real run {real_run}" if real_run else f"synthetic p={p_main}"
    curve = analyze_with_curve(main, workers=workers)
    n = len(curve.times) - 1
    total = curve.times[-1]
    row(
        "analysis",
        f"analyze --fourier, {n} checkpoints ({label}), {workers} worker(s)",
        f"{n / total:.2f} ckpt/s",
        f"{total:.1f} s in all, import excluded",
    )
    marks = sorted({max(1, n // 4), max(1, n // 2), n})
    per = [curve.times[m] / m for m in marks]
    row(
        "analysis",
        "  linear in checkpoints: s/ckpt after " + ", ".join(map(str, marks)),
        " / ".join(f"{x:.3f}" for x in per),
        "equal values = linear",
    )
    rss = [curve.rss[m - 1] / 2**20 for m in marks]
    row(
        "analysis",
        "  peak RSS after " + ", ".join(map(str, marks)) + " ckpts (MiB)",
        " / ".join(f"{x:.0f}" for x in rss),
        "flat = streamed (one model object reused)",
    )
    rates = {}
    for p in p_values:
        c = analyze_with_curve(synthetic_run(p, n_small), workers=1)
        rates[p] = (c.times[-1] - c.times[1]) / (
            len(c.times) - 2
        )  # steady state, key-frequency pass excluded
        row(
            "analysis",
            f"  p={p}: s per checkpoint ({n_small} ckpts, 1 worker)",
            f"{rates[p]:.3f} s",
            "",
        )
    if len(p_values) >= 2:
        import math

        lo, hi = min(p_values), max(p_values)
        row(
            "analysis",
            f"  growth with p ({lo}->{hi})",
            f"~p^{math.log(rates[hi] / rates[lo]) / math.log(hi / lo):.1f}",
            "p² inputs x d_mlp neurons",
        )
    if n_naive:
        naive = naive_analysis(synthetic_run(p_naive, n_small), n_naive)
        fast = rates[p_naive]
        row(
            "analysis",
            f"  naive loop (rebuild model+basis, run_with_cache, p={p_naive})",
            f"{naive:.3f} s/ckpt",
            f"{naive / fast:.1f}x slower than the project's analyze_run ({n_naive} ckpts)",
        )
    workers_row(p_full if p_full in rates else p_values[-1], n_workers_row)
    if p_full in rates and (real_run is not None or (p_main, n_main) != (p_full, n_full)):
        row(
            "analysis",
            f"all {n_full} ckpts of a 40k-step mod-add run (p={p_full}), 1 worker",
            f"{n_full * rates[p_full]:.0f} s",
            "extrapolated from the linear rate; target < 30 s",
        )


def workers_row(p: int, n: int, rounds: int = 3) -> None:
    """Per-checkpoint analysis time with 1 vs 2 checkpoint workers (one torch thread each),
    and with 1 worker using 2 torch threads: whole checkpoints in parallel vs split ops.
    Per-run costs (model objects, the key-frequency pass) are included, so use enough
    checkpoints for them not to dominate."""
    from circuits.pipeline import analyze
    from interp.runs import load_run

    run = load_run(synthetic_run(p, n))
    saved = torch.get_num_threads()
    variants = {
        "1 worker, 1 thread": (1, 1),
        "2 workers, 1 thread each": (2, 1),
        "1 worker, 2 threads": (1, 2),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(rounds):
            for name, (workers, threads) in variants.items():
                torch.set_num_threads(threads)
                start = time.perf_counter()
                analyze.analyze_run(run, ("fourier",), workers=workers)
                times[name].append((time.perf_counter() - start) / (len(run.steps) + 1))
    finally:
        torch.set_num_threads(saved)
    medians = {name: median(t) for name, t in times.items()}
    row(
        "analysis",
        f"  p={p}: s/ckpt with " + " | ".join(variants),
        " / ".join(f"{m:.3f}" for m in medians.values()),
        f"interleaved, {n} ckpts; 2 workers = "
        f"{medians['1 worker, 1 thread'] / medians['2 workers, 1 thread each']:.2f}x",
    )
