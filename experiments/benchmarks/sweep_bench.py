"""Sweep throughput: the same N runs with the local backend (2 workers, 1 thread each) against
one after another in one process (1 thread, and 2 threads), measured side by side in one call.

    python -m experiments.benchmarks.sweep_bench [--runs 8] [--steps 600]

Each mode runs in a fresh process and is timed end to end (imports, worker start-up and
TransformerLens import included), on demo-size runs (p = 59, d_model 128, full batch) that
differ by seed. Also reported: the per-run overhead of the sweep after warm-up, i.e. a
worker's time for a run (`seconds` in sweep.json) minus the run's own training clock
(`time_s` of its last metrics row), and the coordinator's dispatch gap. Run it on an
otherwise idle machine: the comparison is only fair when the cores are free.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """base = "demo"
set = ["train.steps={steps}", "train.ckpt_every=50", "train.ckpt_log_until=100"]
seeds = {seeds}
"""


def _spec(folder: Path, runs: int, steps: int) -> Path:
    path = folder / "bench.toml"
    path.write_text(SPEC.format(steps=steps, seeds=list(range(runs))))
    return path


def sequential(spec: Path, out: Path, threads: int) -> dict:
    """Every planned run, one after another in this process."""
    start = time.perf_counter()
    import torch

    torch.set_num_threads(threads)
    from interp import training
    from interp.sweep.spec import load_spec

    for run in load_spec(spec).runs:
        training.train(run.config, out / run.name, progress=False)
    return {"wall_s": time.perf_counter() - start}


def pooled(spec: Path, out: Path, workers: int) -> dict:
    start = time.perf_counter()
    from interp.sweep.runner import run_sweep
    from interp.sweep.spec import load_spec

    outcome = run_sweep(load_spec(spec), out, workers=workers, threads=1, progress=False)
    wall = time.perf_counter() - start
    manifest = json.loads((out / "sweep.json").read_text())
    overhead = []
    for entry in manifest["runs"]:
        rows = (out / "runs" / entry["name"] / "metrics.jsonl").read_text().splitlines()
        overhead.append(entry["seconds"] - json.loads(rows[-1])["time_s"])
    return {
        "wall_s": wall,
        "failed": len(outcome.failed),
        # the first run of each worker also builds what later runs reuse
        "overhead_after_warmup_s": statistics.median(overhead[workers:] or overhead),
        "run_s": statistics.median(e["seconds"] for e in manifest["runs"]),
        # everything that is not a worker running a run: start-up, imports, dispatch, idle tail
        "idle_per_run_s": (wall * workers - sum(e["seconds"] for e in manifest["runs"]))
        / len(manifest["runs"]),
    }


def _child(mode: str, spec: Path, out: Path) -> dict:
    code = (
        "import json, sys; from pathlib import Path; "
        "from experiments.benchmarks import sweep_bench as b; "
        f"print(json.dumps(b.{mode}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path.cwd()
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    spec = _spec(root, args.runs, args.steps)

    def call(function: str, folder: str, n: int) -> str:
        return f"{function}(Path({str(spec)!r}), Path({str(root / folder)!r}), {n})"

    modes = {
        "one process, 1 thread": call("sequential", "seq1", 1),
        "one process, 2 threads": call("sequential", "seq2", 2),
        "sweep, 2 workers x 1 thread": call("pooled", "pool", 2),
    }
    results = {name: _child(call, spec, root) for name, call in modes.items()}
    base = results["one process, 1 thread"]["wall_s"]
    print(f"{args.runs} demo-size runs x {args.steps} steps (wall time, end to end):")
    for name, r in results.items():
        print(f"  {name:30s} {r['wall_s']:7.1f} s   speed-up vs 1 thread {base / r['wall_s']:.2f}x")
    pool = results["sweep, 2 workers x 1 thread"]
    print(
        f"  per-run overhead after warm-up (worker time - training clock): "
        f"{pool['overhead_after_warmup_s']:.2f} s (median run {pool['run_s']:.1f} s); worker "
        f"time not spent in runs (start-up, imports, dispatch, idle tail): "
        f"{pool['idle_per_run_s']:.2f} s per run"
    )


if __name__ == "__main__":
    main()
