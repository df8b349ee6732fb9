"""One benchmark run, one table: training throughput, time-to-grok, analysis throughput, start-up.

    python -m experiments.benchmarks.bench            # full (~10-20 min on 2 busy cores)
    python -m experiments.benchmarks.bench --quick    # a few minutes
    python -m experiments.benchmarks.bench --grok-results /tmp/grok.jsonl --anchor-run
    /work/runs/mod-add

Compared variants are measured interleaved in this one process (A, B, A, B, ...) and
reported as medians, so load from other processes hits both alike. Nothing here is a
unit test: there are no timed assertions anywhere in `tests/`.

Time-to-grok runs take minutes to hours, so they are run by `experiments.benchmarks.grok`
(in the background) and read here from `--grok-results`; `--grok-seeds N` runs N seeds of
`mod-add-fast` in this process instead. The anchor recipe's wall-clock, when no anchor run
finished, is extrapolated: its steps to grok (from `--anchor-run`, a project-trainer run
of `mod-add`: the same initial weights and the same function as the reference) divided by
the reference's steps/s measured here. The table says which numbers are extrapolated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python experiments/benchmarks/bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch

from experiments.benchmarks.analysis_bench import (  # noqa: F401 (re-exported for tests)
    Curve,
    PeakRSS,
    analysis_throughput,
    analyze_with_curve,
    naive_analysis,
    synthetic_run,
    workers_row,
)
from experiments.benchmarks.grok_table import grok_from_run, time_to_grok  # noqa: F401
from experiments.benchmarks.table import ROWS, median, row
from interp.config import RunConfig
from interp.presets import PRESETS

# --------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": model,
        "nproc": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "load_avg_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    return info


def matmul_peak(n: int, repeats: int = 5) -> float:
    """fp32 GFLOP/s of one large torch.matmul, best of `repeats` (the machine's practical peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return max(rates)


# --------------------------------------------------------------------------------------
# Training throughput
# --------------------------------------------------------------------------------------


def step_flops(config: RunConfig, batch: int, *, all_positions: bool) -> float:
    """Analytic FLOPs of one forward + backward (backward = 2 x forward) of the 1-layer model.

    `all_positions`: the reference (Q, K, V, O, MLP, unembedding at every position). Else the
    project's shortcut: Q/K/V on the (position, token) tables, the rest at the last position.
    """
    m, t = config.model, config.task
    d, hd, mlp, v_out, seq = m.d_model, m.n_heads * m.d_head, m.d_mlp, t.d_vocab_out, t.n_ctx
    attn = 2 * 2 * m.n_heads * seq * m.d_head  # scores + pattern @ v, per query
    per_query = attn + 2 * hd * d + 2 * 2 * d * mlp + 2 * d * v_out  # attention, O, MLP, unembed
    if all_positions:
        forward = batch * seq * (3 * 2 * d * hd + per_query)
    else:
        tables = (
            (2 * seq + 1) * t.d_vocab * 2 * d * hd
        )  # K, V on every position's table, Q on the last
        forward = tables + batch * per_query
    return 3.0 * forward


def training_throughput(rounds: int, block: int, peak: float) -> dict[str, float]:
    from experiments.benchmarks.reference import (
        make_optimizer,
        reference_from_config,
        reference_step,
    )
    from interp.training import Trainer

    config = PRESETS["mod-add"]
    trainer = Trainer(config, Path("/tmp/interp_bench_unused"), progress=False)  # writes nothing
    reference = reference_from_config(config)
    opt, sched = make_optimizer(reference, config)
    x, y = trainer.sampler.tokens, trainer.sampler.labels
    n = len(y)

    def time_block(fn) -> float:
        start = time.perf_counter()
        for _ in range(block):
            fn()
        return block / (time.perf_counter() - start)

    project = lambda: trainer.train_step()  # noqa: E731
    plain = lambda: reference_step(reference, opt, sched, x, y)  # noqa: E731
    project(), plain()  # warm-up
    rates = {"project": [], "reference": []}
    for _ in range(rounds):  # interleaved: contention hits both alike
        rates["project"].append(time_block(project))
        rates["reference"].append(time_block(plain))
    row("train", "torch threads", str(torch.get_num_threads()), "")
    p_rate, r_rate = median(rates["project"]), median(rates["reference"])
    p_flops = step_flops(config, n, all_positions=False)
    r_flops = step_flops(config, n, all_positions=True)
    row(
        "train",
        f"project Trainer step, mod-add full batch ({n} ex.)",
        f"{p_rate:.2f} steps/s",
        f"median of {rounds}x{block} steps; {p_flops / 1e9:.2f} GFLOP/step -> "
        f"{p_rate * p_flops / 1e9:.1f} GFLOP/s "
        f"({100 * p_rate * p_flops / 1e9 / peak:.0f}% of peak)",
    )
    row(
        "train",
        "reference: TransformerLens forward, every position",
        f"{r_rate:.2f} steps/s",
        f"{r_flops / 1e9:.2f} GFLOP/step -> {r_rate * r_flops / 1e9:.1f} GFLOP/s "
        f"({100 * r_rate * r_flops / 1e9 / peak:.0f}% of peak)",
    )
    row(
        "train",
        "speed-up project / reference (target >= 1.8x)",
        f"{p_rate / r_rate:.2f}x",
        "per-round ratios "
        f"{', '.join(f'{a / b:.2f}' for a, b in zip(rates['project'], rates['reference']))}",
    )
    return {"project_steps_s": p_rate, "reference_steps_s": r_rate}


def multiseed_throughput(seed_counts: list[int], rounds: int, block: int, device: str) -> None:
    from interp.multiseed import MultiSeedTrainer

    config = PRESETS["mod-add"]
    trainers = {
        s: MultiSeedTrainer(config, list(range(999, 999 + s)), device=device) for s in seed_counts
    }
    for t in trainers.values():
        t.train_step()
    rates: dict[int, list[float]] = {s: [] for s in seed_counts}
    for _ in range(rounds):
        for s, t in trainers.items():
            start = time.perf_counter()
            for _ in range(block):
                t.train_step()
            if device == "cuda":
                torch.cuda.synchronize()
            rates[s].append(block * s / (time.perf_counter() - start))
    base = median(rates[seed_counts[0]]) / seed_counts[0]
    for s in seed_counts:
        r = median(rates[s])
        row(
            "multiseed",
            f"{s} seed(s) of mod-add in one process ({device})",
            f"{r:.2f} seed-steps/s",
            f"{r / (base * s):.2f}x of {s} x single-seed rate",
        )


# --------------------------------------------------------------------------------------
# Time-to-grok
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Start-up
# --------------------------------------------------------------------------------------


def startup(repeats: int) -> None:
    exe = Path(sys.executable).with_name("interp")
    cmd = [str(exe), "--help"] if exe.exists() else [sys.executable, "-m", "interp.cli", "--help"]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    row(
        "startup",
        "interp --help wall time (target < 1 s)",
        f"{median(times):.2f} s",
        f"median of {repeats}",
    )
    code = "import sys, interp.cli; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    ).stdout.strip()
    row("startup", "import interp.cli imports torch?", out, "tested in tests/interp/test_cli.py")


# --------------------------------------------------------------------------------------


def print_table(info: dict[str, str]) -> str:
    lines = [
        f"machine: {info['cpu']}, nproc {info['nproc']}, torch {info['torch']} "
        f"({info['torch_threads']} threads), "
        f"python {info['python']}, CUDA: {info['cuda']}; load average at start "
        f"{info['load_avg_start']}, "
        f"at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        "",
        "| section | measurement | value | note |",
        "|---|---|---|---|",
    ]
    lines += [f"| {s} | {m.strip()} | {v} | {n} |" for s, m, v, n in ROWS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short version (minutes)")
    parser.add_argument(
        "--grok-results", type=Path, help="JSON lines from experiments.benchmarks.grok"
    )
    parser.add_argument(
        "--anchor-run",
        type=Path,
        help="a project-trainer run of mod-add (steps to grok of the anchor)",
    )
    parser.add_argument(
        "--grok-seeds", type=int, default=0, help="run this many seeds of mod-add-fast here"
    )
    parser.add_argument(
        "--analysis-run", type=Path, help="analyze this real run instead of a synthetic one"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)"
    )
    parser.add_argument(
        "--analysis-workers",
        type=int,
        default=os.cpu_count() or 1,
        help="checkpoint workers for the main analysis measurement (default: all cores, as `interp "
        "analyze`)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        help="section to skip (train, multiseed, grok, analysis, startup)",
    )
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine()
    print(f"machine: {info}", flush=True)
    q = args.quick
    peak = matmul_peak(1024 if q else 2048)
    row(
        "machine",
        f"fp32 matmul peak ({1024 if q else 2048}² torch.matmul, best of 5)",
        f"{peak:.1f} GFLOP/s",
        "",
    )
    rates = {"project_steps_s": float("nan"), "reference_steps_s": float("nan")}
    if "train" not in args.skip:
        rates = training_throughput(rounds=3 if q else 7, block=2 if q else 5, peak=peak)
    if "multiseed" not in args.skip:
        multiseed_throughput(
            [1, 2] if q else [1, 2, 4],
            rounds=2 if q else 3,
            block=2 if q else 3,
            device=args.device,
        )
    if "grok" not in args.skip:
        time_to_grok(
            args.grok_results,
            args.anchor_run,
            args.grok_seeds,
            rates["reference_steps_s"],
            rates["project_steps_s"],
        )
    if "analysis" not in args.skip:
        from interp.memory import keep_freed_memory
        from interp.schedule import checkpoint_schedule

        keep_freed_memory()  # as `interp analyze` does

        n_full = len(checkpoint_schedule(40_000, 100, 1000))
        w = args.analysis_workers
        if q:
            analysis_throughput(
                59,
                40,
                [31, 59, 113],
                5,
                59,
                2,
                n_full,
                args.analysis_run,
                workers=w,
                n_workers_row=8,
            )
        else:
            analysis_throughput(
                113, n_full, [31, 59, 113], 12, 113, 3, n_full, args.analysis_run, workers=w
            )
    if "startup" not in args.skip:
        startup(3)
    table = print_table(info)
    print("\n" + table)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": ROWS}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
