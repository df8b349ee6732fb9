"""Is a preset stable past its grokking point? Train it with early stopping off, per seed.

    python -m experiments.stability mod-add-fast --seeds 999 1000 1001 1002 1003 --steps 1500 --out
    stab.jsonl
    python -m experiments.stability demo --seeds 999 1000 1001 1002 1003 --steps 3000 --out
    stab.jsonl

For each seed it reports, from the run's own metrics: the grokking step (first checkpoint
with test accuracy >= 99 %: a measurement, not a selection), the minimum train and test
accuracy from there to 3x that step (and to the end), the final accuracies and
circuit_score, and any collapse events the trainer recorded. A seed passes when it groks
and stays >= 99 % on train and test until 3x its grokking step, and the run covered that far.
Extra `--set` overrides apply to every seed (e.g. `--set train.weight_norm_floor=0` for the
old recipe).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def summarize(rows: list[dict], target: float = 0.99) -> dict:
    rows = sorted(rows, key=lambda r: r["step"])
    grok = next((r["step"] for r in rows if r["test_acc"] >= target), None)
    out: dict = {
        "grok_step": grok,
        "final_step": rows[-1]["step"],
        "final_train_acc": rows[-1]["train_acc"],
        "final_test_acc": rows[-1]["test_acc"],
        "final_circuit_score": rows[-1].get("circuit_score"),
        "collapse_steps": [
            e["step"] for r in rows for e in r.get("events", []) if e["kind"] == "collapse"
        ],
    }
    if grok is not None:
        window = [r for r in rows if grok <= r["step"] <= 3 * grok]
        after = [r for r in rows if r["step"] >= grok]
        out.update(
            covered_3x=rows[-1]["step"] >= 3 * grok,
            min_train_acc_3x=min(r["train_acc"] for r in window),
            min_test_acc_3x=min(r["test_acc"] for r in window),
            min_train_acc_after=min(r["train_acc"] for r in after),
            min_test_acc_after=min(r["test_acc"] for r in after),
            min_circuit_score_after=min(r.get("circuit_score", float("nan")) for r in after),
        )
        out["stable"] = bool(
            out["covered_3x"]
            and out["min_train_acc_3x"] >= target
            and out["min_test_acc_3x"] >= target
        )
    else:
        out["stable"] = False
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1000, 1001, 1002, 1003])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON lines, one per seed (appended)"
    )
    parser.add_argument(
        "--runs", type=Path, default=Path("/tmp/interp_stability"), help="where the run folders go"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from interp.cli import resolve_config
    from interp.runs import read_metrics
    from interp.training import train

    for seed in args.seeds:
        overrides = [
            f"model.seed={seed}",
            f"train.steps={args.steps}",
            "train.stop_at_val_acc=0",
            *args.overrides,
        ]
        config = resolve_config(args.preset, overrides)
        run_dir = args.runs / f"{args.preset}_s{seed}_{args.steps}"
        start = time.perf_counter()
        train(config, run_dir, progress=False, overwrite=True)
        row = {
            "preset": args.preset,
            "seed": seed,
            "overrides": args.overrides,
            "run_dir": str(run_dir),
            "seconds": round(time.perf_counter() - start, 1),
            **summarize(read_metrics(run_dir)),
        }
        with open(args.out, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
