"""`--llc` before and after the batched chains (issue 25), side by side on one run:

    python -m experiments.benchmarks.llc_bench runs/demo [--workers 2] [--cli]

Both estimate the same checkpoints of the run (`analyze_llc`'s choice) after the same base
analysis: the new `circuits.analyses.llc.analyze_llc` (chains batched, the probe's chain
resumed as chain 0, the one-layer loss of `circuits.analyses.llc_loss`), and `OLD` below, a
verbatim copy of the per-chain loop it replaced (one chain after another, one shared noise
generator, every parameter tensor updated on its own, the probe chain thrown away). Prints
wall and CPU seconds of each and the estimates per checkpoint (mean ± chain std, ε).
The two draw different noise (per-chain generators now, `chain_seeds`), so their estimates
agree within their chain spread, not digit for digit. `--cli` also times `interp analyze
--llc` end to end (a fresh process, imports and the base analysis included), the number
docs/circuits.md quotes.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from circuits.analyses.llc import (
    LADDER,
    STEP_FACTOR,
    LLCEstimate,
    LLCSettings,
    analyze_llc,
    chain_estimate,
    llc_inputs,
)

# --------------------------------------------------------------------------------------
# OLD: the implementation before issue 25 (commit 4e288eb), for the side-by-side
# --------------------------------------------------------------------------------------


def old_estimate_llc(loss_fn, params, n, settings):
    n_beta = n / math.log(n)
    center = {k: v.detach().clone() for k, v in params.items()}
    with torch.no_grad():
        init_loss = float(loss_fn(center))
    generator = torch.Generator().manual_seed(settings.seed)
    eps, gamma = settings.lr, settings.gamma
    traces = []
    for _ in range(settings.chains):
        w = {k: v.clone().requires_grad_(True) for k, v in center.items()}
        trace: list[float] = []
        for _step in range(settings.steps):
            loss = loss_fn(w)
            grads = torch.autograd.grad(loss, list(w.values()))
            trace.append(float(loss.detach()))
            with torch.no_grad():
                for (name, value), grad in zip(w.items(), grads):
                    drift = n_beta * grad + gamma * (value - center[name])
                    noise = torch.randn(value.shape, generator=generator, dtype=value.dtype)
                    value.add_(-0.5 * eps * drift + math.sqrt(eps) * noise)
        traces.append(trace)
    return chain_estimate(traces, init_loss, n_beta, settings)


def old_model_llc(model, tokens, labels, loss, forward, settings):
    import copy

    from torch import nn
    from torch.func import functional_call

    from interp.model.build import native_model

    model = copy.deepcopy(model)

    class Wrapped(nn.Module):
        def __init__(self):
            super().__init__()
            self.native = native_model(model)

        def forward(self, inputs):
            return forward(model, inputs)

    wrapped = Wrapped()
    params = {k: v.detach() for k, v in wrapped.named_parameters()}

    def loss_fn(values):
        return loss(functional_call(wrapped, values, (tokens,)), labels)

    return old_estimate_llc(loss_fn, params, labels.numel(), settings)


def old_analyze_llc(run, result, settings=LLCSettings(), workers=1):
    from circuits.pipeline.checkpoint_map import map_checkpoints
    family = result.family
    tokens, labels, loss, steps = llc_inputs(run, result, settings.seed)  # the same data
    escape = math.log(run.config.task.d_vocab_out)

    def estimates(chain_settings):
        def make():
            def one(model, step):
                estimate = old_model_llc(
                    model, tokens, labels, loss, family.forward, chain_settings
                )
                return _Old(step, estimate)

            return one

        results, _ = map_checkpoints(run, steps, make, workers=workers)
        return {r.step: r.estimate for r in results}

    for eps in [settings.lr * STEP_FACTOR**i for i in range(LADDER)]:
        probe = replace(settings, lr=eps, escape=escape, chains=1, steps=settings.burnin, burnin=0)
        if all(e.diverged == 0 for e in estimates(probe).values()):
            break
    return estimates(replace(settings, lr=eps, escape=escape))


class _Old:
    def __init__(self, step, estimate):
        self.step, self.estimate = step, estimate


# --------------------------------------------------------------------------------------
# The side-by-side
# --------------------------------------------------------------------------------------


def timed(fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def cli_seconds(run_dir: Path) -> float:
    """`interp analyze --llc` in a fresh process on a copy of the run (no earlier analysis)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / run_dir.name
        shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("analysis"))
        start = time.perf_counter()
        subprocess.run(["interp", "analyze", str(copy), "--llc", "-q"], check=True)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    import interp
    from interp.registry import family_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("runs/demo"))
    parser.add_argument("--workers", type=int, default=max(1, torch.get_num_threads()))
    parser.add_argument("--cli", action="store_true", help="also time `interp analyze --llc`")
    parser.add_argument("--skip-old", action="store_true", help="only the new implementation")
    args = parser.parse_args(argv)

    run = interp.load_run(args.run_dir)
    family = family_of(run.config)
    steps = list(run.steps)
    result = family.analyze(run, (), steps, workers=args.workers, progress=False, figures=False)
    print(f"load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)")
    new, new_wall, new_cpu = timed(analyze_llc, run, result, workers=args.workers)
    print(f"{args.run_dir}: {len(new)} checkpoints estimated, {args.workers} workers")
    print(f"new: {new_wall:7.1f} s wall, {new_cpu:7.1f} s CPU")
    old = {}
    if not args.skip_old:
        old, old_wall, old_cpu = timed(old_analyze_llc, run, result, workers=args.workers)
        print(f"old: {old_wall:7.1f} s wall, {old_cpu:7.1f} s CPU  ({old_wall / new_wall:.1f}x)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.cli:
        print(f"`interp analyze --llc` (new, fresh process): {cli_seconds(args.run_dir):.1f} s")

    def show(e: LLCEstimate | None) -> str:
        return f"{e.mean:8.1f} ± {e.std:5.1f} ({e.eps:.1e})" if e else " " * 25

    print(f"{'step':>6}  {'old: llc ± std (eps)':>25}  {'new: llc ± std (eps)':>25}  |Δ|/std")
    for step in sorted(new):
        a, b = old.get(step), new[step]
        spread = math.hypot(a.std, b.std) if a else math.nan
        gap = abs(a.mean - b.mean) / spread if a else math.nan
        print(f"{step:>6}  {show(a)}  {show(b)}  {gap:6.2f}")


if __name__ == "__main__":
    main()
