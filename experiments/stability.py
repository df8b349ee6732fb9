"""Is a preset stable past its grokking point? Train it with early stopping off, per seed and
per torch thread count.

    python -m experiments.stability mod-add-fast --seeds 999 1000 1001 1002 1003 --steps 1500 \
        --threads 1 2 --out stab.jsonl
    python -m experiments.stability demo --seeds 999 1000 1001 1002 1003 --steps 3000 \
        --threads 1 2 --out stab.jsonl

Each (seed, thread count) is one `interp train PRESET --threads N` in its own process: torch's
thread count is per process, and it changes the float reduction order, so the same seed
follows another trajectory with 1 and with 2 threads. Runs go one at a time.

For each run it reports, from the run's own metrics: the grokking step (first checkpoint
with test accuracy >= 99 %: a measurement, not a selection), the minimum train and test
accuracy from there to 3x that step and to the end, the final accuracies and circuit_score,
and any collapse events the trainer recorded. A run passes when it groks, its budget covers
3x its grokking step, and train and test stay >= 99 % at every checkpoint from the grokking
step to the end. The table at the end lists every run and the median grokking step.
Extra `--set` overrides apply to every run (e.g. `--set train.lr_decay_at_val_acc=0` for
`mod-add-fast` before its lr decay). `--reuse` reads a finished run folder instead of
training again. `--to-3x` continues a run that grokked too late for its budget to cover 3x
its grokking step (`interp train --resume` with the budget raised to exactly 3x), so late
seeds are checked to 3x without giving every run the longest budget.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

#: Starts the CLI in a fresh interpreter (no console script needed).
CLI = "import sys; from interp.cli import entry_point; sys.argv[0] = 'interp'; entry_point()"


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
        out["stable_to_end"] = bool(
            out["stable"]
            and out["min_train_acc_after"] >= target
            and out["min_test_acc_after"] >= target
        )
    else:
        out["stable"] = out["stable_to_end"] = False
    return out


def _finished(run_dir: Path, steps: int) -> list[dict] | None:
    from interp.runs import read_metrics

    try:
        rows = read_metrics(run_dir)
    except Exception:  # noqa: BLE001 - an unreadable folder is simply trained again
        return None
    return rows if rows and max(r["step"] for r in rows) >= steps else None


def train_one(
    preset: str,
    seed: int,
    threads: int,
    steps: int,
    overrides: list[str],
    runs: Path,
    reuse: bool,
    to_3x: bool = False,
) -> dict:
    from interp.runs import read_metrics

    run_dir = runs / f"{preset}_s{seed}_t{threads}_{steps}"
    start = time.perf_counter()
    if not (reuse and _finished(run_dir, steps)):
        sets = [
            f"model.seed={seed}",
            f"train.steps={steps}",
            "train.stop_at_val_acc=0",
            *overrides,
        ]
        command = [sys.executable, "-c", CLI, "train", preset, "--out", str(run_dir)]
        command += ["--overwrite", "--threads", str(threads), "-q"]
        for item in sets:
            command += ["--set", item]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    rows = read_metrics(run_dir)
    grok = summarize(rows)["grok_step"]
    if to_3x and grok is not None and max(r["step"] for r in rows) < 3 * grok:
        config_file = run_dir / "config.json"
        config = json.loads(config_file.read_text())
        config["train"]["steps"] = 3 * grok
        config_file.write_text(json.dumps(config, indent=2))
        command = [sys.executable, "-c", CLI, "train", "--resume", "--out", str(run_dir)]
        command += ["--threads", str(threads), "-q"]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=os.environ.copy())
    return {
        "preset": preset,
        "seed": seed,
        "threads": threads,
        "overrides": overrides,
        "run_dir": str(run_dir),
        "seconds": round(time.perf_counter() - start, 1),
        **summarize(read_metrics(run_dir)),
    }


def table(rows: list[dict]) -> str:
    def acc(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = [
        "| seed | threads | grokking step | min train / test acc after grokking | "
        "final train / test | collapses | passes |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["seed"], r["threads"])):
        lines.append(
            f"| {r['seed']} | {r['threads']} | {r['grok_step'] or 'never'} | "
            f"{acc(r.get('min_train_acc_after'))} / {acc(r.get('min_test_acc_after'))} | "
            f"{acc(r['final_train_acc'])} / {acc(r['final_test_acc'])} | "
            f"{', '.join(map(str, r['collapse_steps'])) or 'none'} | "
            f"{'yes' if r['stable_to_end'] else 'NO'} |"
        )
    grokked = [r["grok_step"] for r in rows if r["grok_step"] is not None]
    median = statistics.median(grokked) if grokked else None
    passed = sum(r["stable_to_end"] for r in rows)
    lines.append("")
    lines.append(
        f"{passed}/{len(rows)} runs stay >= 99 % on train and test from grokking to the end "
        f"(covering 3x the grokking step); {len(grokked)}/{len(rows)} grokked, median grokking "
        f"step {median}, range {min(grokked, default=None)}–{max(grokked, default=None)}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("preset")
    parser.add_argument("--seeds", type=int, nargs="+", default=[999, 1000, 1001, 1002, 1003])
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1], help="torch thread counts, one run each"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="JSON lines, one per run (appended)"
    )
    parser.add_argument(
        "--runs", type=Path, default=Path("/tmp/interp_stability"), help="where the run folders go"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--reuse", action="store_true", help="read finished run folders instead of retraining"
    )
    parser.add_argument(
        "--to-3x", action="store_true", help="continue late-grokking runs to 3x their grokking step"
    )
    args = parser.parse_args(argv)

    rows = []
    for seed in args.seeds:
        for threads in args.threads:
            row = train_one(
                args.preset,
                seed,
                threads,
                args.steps,
                args.overrides,
                args.runs,
                args.reuse,
                args.to_3x,
            )
            rows.append(row)
            with open(args.out, "a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(table(rows))
    return 0 if all(r["stable_to_end"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
