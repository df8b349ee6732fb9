"""The numbers of the sweep reproductions in docs/experiments.md, from the sweep folders.

    python -m experiments.sweep_numbers wd SWEEP_DIR       # grokking time against weight decay
    python -m experiments.sweep_numbers phase SWEEP_DIR    # outcome counts per cell
    python -m experiments.sweep_numbers ungrok SWEEP_DIR   # final test accuracy against N
    python -m experiments.sweep_numbers frontier SWEEP_DIR # entity runs: test-ID/OOD by steps
    python -m experiments.sweep_numbers scaling SWEEP_DIR  # graph walks: L(D), fits, count limits

Each reads the sweep with `interp.load_sweep` (the same table as `sweep.csv`).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

import interp

WD, FRAC, SUBSET, SOURCE = (
    "train.weight_decay",
    "task.train_frac",
    "task.train_subset",
    "train.init_from",
)


def grok_time(path: str) -> None:
    sweep = interp.load_sweep(path)
    print(sweep.event_curve(WD).to_string(index=False))
    fit = sweep.fit(WD)
    lo, hi = fit.fit.interval["b"]
    print(
        f"t_generalized = {fit.fit.params['a']:.4g} * wd^b, b = {fit.fit.params['b']:.3f} "
        f"[{lo:.3f}, {hi:.3f}] (95 %), {fit.fit.n} runs, {fit.excluded_censored} censored left out"
    )
    memorized = sweep.table["memorized_step"]
    print(
        f"memorization step: median {memorized.median():.0f} "
        f"(range {memorized.min():.0f}-{memorized.max():.0f})"
    )
    print("outcomes:", sweep.table["outcome"].value_counts().to_dict())
    print(f"wall time per run: median {sweep.table['wall_s'].median():.0f} s")


def phase(path: str) -> None:
    sweep = interp.load_sweep(path)
    table = sweep.table[sweep.table["status"] == "done"]

    def majority(outcomes: pd.Series) -> str:
        counts = outcomes.value_counts()
        return f"{counts.idxmax()} {counts.max()}/{len(outcomes)}"

    cells = table.groupby([FRAC, WD])["outcome"].agg(majority)
    print(cells.unstack(WD).to_string())
    print("outcomes:", table["outcome"].value_counts().to_dict())
    acc = table.groupby([FRAC, WD])["final_test_acc"].mean().unstack(WD)
    print("mean final test accuracy:\n" + acc.round(3).to_string())
    print(f"disk use: {sweep.manifest.get('disk_bytes', 0) / 1e9:.2f} GB for {len(table)} runs")


def _crossing(xs: np.ndarray, ys: np.ndarray, level: float) -> float:
    """The x (log-linear interpolation) where y first rises through `level`, scanning up."""
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if y0 < level <= y1:
            t = (level - y0) / (y1 - y0)
            return float(math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0))))
    return math.nan


def ungrok(path: str) -> None:
    sweep = interp.load_sweep(path)
    table = sweep.table[sweep.table["status"] == "done"].copy()
    table["start"] = np.where(table[SOURCE].fillna("").astype(str) == "", "scratch", "grokked")
    # Mean final test accuracy over seeds with its interval (the report's own curve).
    curve = sweep.curve(SUBSET, "final_test_acc", by=[SOURCE]).rename(
        columns={SUBSET: "N", "mean": "test_acc"}
    )
    curve.insert(
        0, "start", np.where(curve[SOURCE].fillna("").astype(str) == "", "scratch", "grokked")
    )
    ever, final = [], []
    for start, n in zip(curve["start"], curve["N"]):
        group = table[(table["start"] == start) & (table[SUBSET] == n)]
        ever.append(f"{int((~group['generalized_censored'].astype(bool)).sum())}/{len(group)}")
        final.append(f"{int((group['final_test_acc'] >= 0.99).sum())}/{len(group)}")
    curve = curve.assign(ever_99=ever, final_99=final).drop(
        columns=[SOURCE, "n_censored", "method"]
    )
    print(curve.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    grokked = curve[curve["start"] == "grokked"].sort_values("N")
    critical = _crossing(grokked["N"].to_numpy(float), grokked["test_acc"].to_numpy(), 0.5)
    print(
        f"fine-tuned from the grokked model: test accuracy falls below 50 % at N ≈ {critical:.0f}"
    )
    scratch = table[table["start"] == "scratch"]
    grokking = scratch[~scratch["generalized_censored"].astype(bool)]
    smallest = grokking[SUBSET].min() if len(grokking) else math.nan
    print(
        f"from scratch, in the same budget: smallest N where a run reaches test ≥ 99 %: {smallest}"
    )


def frontier(path: str, every: int = 2000) -> None:
    """Test-ID and test-OOD accuracy of every run at every `every` steps (the frontier against
    weight decay, φ, entities and steps), with train atomic accuracy (OOD comparisons need
    the OOD entities' atomic facts)."""
    from interp import runs

    sweep = interp.load_sweep(path)
    for entry in sweep.manifest["runs"]:
        rows = runs.read_metrics(sweep.path / "runs" / entry["name"])
        picked = [r for r in rows if r["step"] % every == 0 and r["step"] > 0]
        cells = ", ".join(
            f"{r['step'] // 1000}k: {r['test_id_acc']:.3f}/{r['test_ood_acc']:.3f}"
            f" (atomic {r['train_atomic_acc']:.3f})"
            for r in picked
        )
        print(f"{entry['name']}: test-ID/test-OOD {cells}")
    done = sweep.table[sweep.table["status"] == "done"]
    best = done.sort_values("final_test_id_acc", ascending=False).head(3)
    columns = ["run", "final_test_id_acc", "final_test_ood_acc", "final_train_atomic_acc", "wall_s"]
    print(best[columns].to_string(index=False))


def scaling(path: str, x: str = "final_tokens_seen") -> None:
    """Per x: the learning rate selected on validation, the model's excess loss over seeds
    (mean and t-interval), the count learners on the same tokens; then both fits and the
    model-to-count-limit ratio at the largest x."""
    from interp.sweep.fits import seed_interval

    sweep = interp.load_sweep(path)
    select = sweep.tuning_axis(x)
    best = sweep.selected(x, select) if select else sweep.done()
    for value, group in best.groupby(x):
        iv = seed_interval(group["final_excess_loss"].to_numpy(float))
        mean, lo, hi = iv.mean, iv.low, iv.high
        rate = f"lr {group[select].iloc[0]:g}, " if select else ""
        limited = ", excluded" if group[sweep.limited_column(x)].any() else ""
        print(
            f"{x} {value:>12,.0f}: {rate}excess {mean:.4g} [{lo:.4g}, {hi:.4g}] "
            f"(n={len(group)}{limited}); "
            f"count learner knowing the graph {group['count_excess_graph'].mean():.3g}, "
            f"over all nodes {group['count_excess_all'].mean():.3g}"
        )
    for fixed in (True, False):
        fit = sweep.scaling(x, fixed=fixed, select=select)
        lo, hi = fit.alpha_interval
        excluded = sorted({e["x"] for e in fit.excluded})
        print(
            f"{'c = H' if fixed else 'c free'}: alpha = {fit.alpha:.3f} [{lo:.3f}, {hi:.3f}], "
            f"c = {fit.irreducible:.4f}, MSE exp/power = {fit.mse_ratio:.1f}, "
            f"{fit.n_points} x values, excluded x: {excluded}"
        )
    H = float(best["scaling_irreducible"].iloc[0])
    top = best[best[x] == best[x].max()]
    ratio = top["final_excess_loss"].mean() / top["count_excess_graph"].mean()
    print(f"H = {H:.5f}; at the largest x the model's excess is {ratio:.0f}x the count limit")
    print(f"wall time of the runs: {sweep.done()['wall_s'].sum():.0f} s in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("wd", "phase", "ungrok", "frontier", "scaling"))
    parser.add_argument("sweep_dir")
    parser.add_argument(
        "--x", default="final_tokens_seen", help="scaling: final_tokens_seen (L(D)) or n_params"
    )
    args = parser.parse_args()
    functions = {
        "wd": grok_time,
        "phase": phase,
        "ungrok": ungrok,
        "frontier": frontier,
        "scaling": lambda path: scaling(path, args.x),
    }
    functions[args.what](args.sweep_dir)


if __name__ == "__main__":
    main()
