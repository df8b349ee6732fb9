"""Issue 23's numbers (docs/experiments.md §7): fixed data, unlimited compute, on random walks.

    python -m experiments.infinite_compute ROOT [--members N]

ROOT holds the study's sweep folders, named after their specs in
experiments/sweeps/fixed_data/ (each is printed when present, "not measured" otherwise):

    standard_epochs/             plain sweep: the standard recipe's overfitting in epochs
    standard_width/              search per width, weight decay 0.01 (L(N), standard)
    standard_D25k/ _D51k/ _D102k/  search at d_model 32 on smaller corpora (L(D), standard)
    tuned_d16/ _d24/ _d32/ _d48/ search of lr × epochs × weight decay per width (L(N), tuned)
    ensemble_d16/ _d24/ _d32/ _d48/  plain sweeps: more seeds at tuned_dW's accepted point
    ensemble_retuned_d32/        plain sweep: members with 2× its epochs (½ its weight decay)

Every loss is the paired excess over H on the test walks (`final_excess_loss`, with its
standard error), selection having read only validation walks; the count learners are the
add-½ learners on the same corpus (`count_excess_graph`, `count_excess_all`). Fits
(`interp.sweep.fits.fit_curve`, bounds ≥ 0 on the asymptote): L(N) = A·(N/10⁴)^−α + E and
L(K) = A·K^−β + C on the excess, once per seed (the interval over seeds) and on the seed means;
the standard recipe's L(D) = A·(D/10⁵)^−α + E is inverted for the data-efficiency multipliers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from interp.sweep.fits import fit_curve, power_law_offset, seed_interval

WIDTHS = (16, 24, 32, 48)
CORPORA = {"standard_D25k": 512, "standard_D51k": 1024, "standard_D102k": 2048}
CONTEXT, LARGEST = 50, 4096


def load(root: Path, name: str):
    if not (root / name / "sweep.json").exists():
        print(f"\n{name}: not measured")
        return None
    import interp

    return interp.load_sweep(root / name)


def seconds(sweep) -> float:
    return sum(e.get("seconds", 0.0) for e in sweep.manifest["runs"])


def epochs(entry: dict) -> float:
    config = entry["config"]
    return config["train"]["steps"] * config["train"]["batch_size"] / config["task"]["corpus_walks"]


def fmt(interval) -> str:
    if interval.n < 2:
        return f"{interval.mean:.4g} (1 seed)"
    return f"{interval.mean:.4g} [{interval.low:.4g}, {interval.high:.4g}] ({interval.n} seeds)"


def overfitting(root: Path) -> None:
    sweep = load(root, "standard_epochs")
    if sweep is None:
        return
    table = sweep.done().copy()
    entries = {e["name"]: e for e in sweep.manifest["runs"]}
    table["epochs"] = [epochs(entries[name]) for name in table["run"]]
    print("\n## Standard recipe (wd 0.01) against epochs, 204,800 tokens, d_model 32")
    print("final validation excess / test excess ± SE (nats over H)")
    for lr, rows in table.groupby("train.lr"):
        rows = rows.sort_values("epochs")
        cells = [
            f"{e:g}: {v:.4f} / {t:.4f}±{s:.4f}"
            for e, v, t, s in zip(
                rows["epochs"],
                rows["final_val_excess_loss"],
                rows["final_excess_loss"],
                rows["final_excess_loss_se"],
            )
        ]
        best = rows.loc[rows["final_val_excess_loss"].idxmin()]
        print(f"lr {lr:g}: " + "; ".join(cells) + f"  -> best on validation at {best.epochs:g}")
    first = table.iloc[0]
    print(
        f"count learners on the same {LARGEST * CONTEXT:,} tokens: "
        f"{first['count_excess_graph']:.5f} (knowing the neighbours), "
        f"{first['count_excess_all']:.5f} (all nodes); {len(table)} runs, {seconds(sweep):.0f} s"
    )


def accepted(sweep) -> list[dict]:
    """Per group of a search: the accepted point, its runs over seeds and the search's cost."""
    record = json.loads((sweep.path / "search.json").read_text())
    done = sweep.done()
    out = []
    for index, group in enumerate(record["groups"]):
        names = [
            e["name"]
            for e in sweep.manifest["runs"]
            if e["search"]["group"] == index
            and all(e["axes"].get(k) == v for k, v in group["point"].items())
        ]
        runs = done[done["run"].isin(names)]
        trials = [e for e in sweep.manifest["runs"] if e["search"]["group"] == index]
        out.append(
            {
                **group,
                "runs": runs,
                "seconds": sum(e.get("seconds", 0.0) for e in trials),
                "wd": runs["train.weight_decay"].iloc[0] if "train.weight_decay" in runs else None,
            }
        )
    return out


def search_table(label: str, sweep) -> list[dict]:
    rows = accepted(sweep)
    print(f"\n## {label}: accepted points (certificate: every one-step neighbour's val loss)")
    for g in rows:
        runs = g["runs"]
        excess = seed_interval(runs["final_excess_loss"]) if len(runs) else None
        certificate = ", ".join(
            f"{c['axis']}{'+' if c['step'] > 0 else '-'}1 {c['value'] - g['value']:+.4f}"
            for c in g["certificate"]
            if c["value"] is not None
        )
        where = ", ".join(f"{k}={v}" for k, v in g["group"].items()) or sweep.path.name
        size = int(runs["n_params"].iloc[0]) if len(runs) else "?"
        print(
            f"{where}: {g['status']} {g['point']} ({size} parameters): val loss {g['value']}, "
            f"test excess {fmt(excess) if excess else '?'}; "
            f"neighbours {certificate or '-'}; {g['points']} points, {g['trials']} trial runs, "
            f"{g['seconds']:.0f} s"
        )
    return rows


def fit_per_seed(table, column: str, scale: float, label: str) -> None:
    """A·(x/scale)^−α + E on `column` per seed and on the seed means (bounds ≥ 0)."""
    bounds = ([0.0, -10.0, 0.0], [np.inf, 0.0, np.inf])
    p0 = [float(table[column].max()), -1.0, float(table[column].min()) / 2]
    by_seed, alphas, asymptotes = table.groupby("seed"), [], []
    for _, rows in by_seed:
        if rows["x"].nunique() < 4:
            continue
        try:
            fit = fit_curve(power_law_offset, rows["x"] / scale, rows[column], p0, bounds=bounds)
        except (RuntimeError, ValueError):
            continue
        alphas.append(-fit.params["b"])
        asymptotes.append(fit.params["c"])
    means = table.groupby("x")[column].mean()
    if len(means) < 4:
        print(f"{label}: {len(means)} sizes measured, a 3-parameter fit needs at least 4")
        return
    fit = fit_curve(power_law_offset, means.index / scale, means.values, p0, bounds=bounds)
    line = (
        f"{label}: mean curve α {-fit.params['b']:.3g}, E {fit.params['c']:.4g} "
        f"(A {fit.params['a']:.3g}, rms {fit.rms:.2g})"
    )
    if len(alphas) >= 2:
        line += f"; over seeds α {fmt(seed_interval(alphas))}, E {fmt(seed_interval(asymptotes))}"
    print(line)


def scaling_in_n(label: str, groups: list[dict]) -> None:
    import pandas as pd

    parts = [g["runs"].assign(x=g["runs"]["n_params"]) for g in groups if len(g["runs"])]
    if not parts:
        return
    table = pd.concat(parts)
    means = table.groupby("x")["final_excess_loss"].mean()
    slopes = np.diff(np.log(means.values)) / np.diff(np.log(means.index.to_numpy(float)))
    print(
        f"\nL(N) {label}: mean test excess by parameters "
        + ", ".join(f"{int(n):,}: {v:.5f}" for n, v in means.items())
        + "; local log-log slopes "
        + ", ".join(f"{s:+.2f}" for s in slopes)
        + (" (not monotone: no power law in N)" if np.any(slopes > 0) else "")
    )
    fit_per_seed(table, "final_excess_loss", 1e4, f"L(N) {label}")


def ensembles(root: Path, tuned: dict | None, width: int, members: int) -> dict | None:
    """L(K) from tuned_dW's accepted runs (seeds 0-2) and ensemble_dW's extra seeds."""
    if tuned is None:
        print(f"\nL(K): tuned_d{width} not measured")
        return None
    paths = [root / f"tuned_d{width}" / "runs" / name for name in tuned["runs"]["run"]]
    extra = load(root, f"ensemble_d{width}")
    if extra is None:
        return None
    paths += [extra.path / "runs" / name for name in extra.done()["run"]]
    return l_of_k(f"tuned_d{width}'s accepted point", paths[:members])


def joint_limit(by_k: dict[int, dict | None], by_width: dict[int, dict]) -> None:
    """The source's joint limit: the K → ∞ limits C(N) per width, fitted over N as
    A·(N/10⁴)^−α + E; E is the joint (N, K) limit. Reported with the limits themselves, and
    plainly when they do not fall with N (then no power law in N describes them)."""
    points = [
        (int(by_width[w]["runs"]["n_params"].iloc[0]), found["limit"])
        for w, found in by_k.items()
        if found and found["limit"] is not None
    ]
    if len(points) < 2:
        print("\njoint N, K limit: ensembles at fewer than 2 widths")
        return
    n, limit = (np.array(v, dtype=float) for v in zip(*sorted(points)))
    slopes = np.diff(np.log(limit)) / np.diff(np.log(n))
    print(
        "\njoint N, K limit: C(N) = the K → ∞ limit per width: "
        + ", ".join(f"{int(a):,}: {b:.5f}" for a, b in zip(n, limit))
        + "; local log-log slopes "
        + ", ".join(f"{v:+.2f}" for v in slopes)
    )
    if np.any(slopes > 0) or len(points) < 4:
        print(
            f"  C(N) does not fall with N at every step (or < 4 widths): no A/N^α + E to fit; "
            f"the lowest limit is {limit.min():.5f} at {int(n[limit.argmin()]):,} parameters"
        )
        return
    fit = fit_curve(
        power_law_offset, n / 1e4, limit, [limit[0], -1.0, limit[-1] / 2],
        bounds=([0, -10, 0], [np.inf, 0, np.inf]),
    )  # fmt: skip
    print(
        f"  fit A·(N/10⁴)^−α + E: α {-fit.params['b']:.3g}, joint limit E "
        f"{fit.params['c']:.5f} [{fit.interval['c'][0]:.5f}, {fit.interval['c'][1]:.5f}]"
    )


def retuned(root: Path, members: int) -> dict | None:
    """L(K) of members with twice the epochs (ensemble_retuned_d32)."""
    sweep = load(root, "ensemble_retuned_d32")
    if sweep is None:
        return None
    done = sweep.done().sort_values("seed")
    paths = [sweep.path / "runs" / name for name in done["run"]][:members]
    return l_of_k("members re-tuned for large K (2× epochs)", paths)


def l_of_k(label: str, paths: list[Path]) -> dict | None:
    """Ensembles of the first K members for K = 1 … len(paths), and the L(K) fit."""
    from circuits.families.graph_walk.ensemble import evaluate_ensemble

    print(f"\n## Ensembles of {label}, K = 1 … {len(paths)}")
    rows = []
    for k in range(1, len(paths) + 1):
        result = evaluate_ensemble(paths[:k])
        logits, probs = result.combined["logits"], result.combined["probs"]
        print(
            f"K={k}: logits {logits.excess_loss:.5f} ± {logits.excess_loss_se:.5f}, "
            f"probs {probs.excess_loss:.5f} (probs − logits {result.difference['mean']:+.2e} ± "
            f"{result.difference['se']:.1e}); count learner {result.count_excess_graph:.5f} "
            f"-> {result.excess_loss / result.count_excess_graph:.2f}x"
        )
        rows.append((k, result.excess_loss, result.count_excess_graph))
    if len(rows) >= 4:
        k, loss = np.array([r[0] for r in rows], float), np.array([r[1] for r in rows])
        fit = fit_curve(
            power_law_offset, k, loss, [loss[0], -1.0, loss[-1] / 2],
            bounds=([0, -10, 0], [np.inf, 0, np.inf]),
        )  # fmt: skip
        print(
            f"L(K) = A·K^−β + C: β {-fit.params['b']:.3g}, C {fit.params['c']:.5f} "
            f"[{fit.interval['c'][0]:.5f}, {fit.interval['c'][1]:.5f}] (t-interval of the fit)"
        )
        return {"best": float(loss.min()), "limit": fit.params["c"], "count": rows[0][2]}
    return {"best": min(r[1] for r in rows), "limit": None, "count": rows[0][2]}


def data_efficiency(root: Path, standard_d32: dict | None, targets: dict[str, float]) -> None:
    """The standard recipe's L(D) over the four corpora, inverted at each target loss."""
    import pandas as pd

    parts = []
    for name, walks in CORPORA.items():
        sweep = load(root, name)
        if sweep is not None:
            (group,) = search_table(f"standard recipe, {walks * CONTEXT:,} tokens", sweep)
            parts.append(group["runs"].assign(x=walks * CONTEXT))
    if standard_d32 is not None:
        parts.append(standard_d32["runs"].assign(x=LARGEST * CONTEXT))
    if len(parts) < 4:
        print(f"\nData efficiency: the standard recipe's L(D) has {len(parts)} of 4 corpora")
        return
    table = pd.concat(parts)
    means = table.groupby("x")["final_excess_loss"].mean()
    fit_per_seed(table, "final_excess_loss", 1e5, "L(D) standard")
    fit = fit_curve(
        power_law_offset, means.index / 1e5, means.values, [1.0, -1.0, 0.0],
        bounds=([0, -10, 0], [np.inf, 0, np.inf]),
    )  # fmt: skip
    a, alpha, e = fit.params["a"], -fit.params["b"], fit.params["c"]
    # Beside the source's inversion of the fitted L(D), the local power law through the two
    # largest corpora (E = 0): a finite answer where a target lies below the fitted E.
    (d1, l1), (d2, l2) = list(means.items())[-2:]
    local = np.log(l1 / l2) / np.log(d2 / d1)
    print(
        "data-efficiency multipliers (effective tokens of the standard recipe / 204,800): "
        f"inverting the fit | the local power law (slope {local:.3g} over {d1:,}-{d2:,} tokens)"
    )
    for label, loss in targets.items():
        if loss is None:
            continue
        near = (l2 / loss) ** (1 / local)
        if loss <= e:
            print(f"  {label}: excess {loss:.5f} -> beyond the fitted asymptote | {near:.2f}x")
            continue
        tokens = 1e5 * (a / (loss - e)) ** (1 / alpha)
        print(f"  {label}: excess {loss:.5f} -> {tokens / (LARGEST * CONTEXT):.2f}x | {near:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--members", type=int, default=8, help="largest K of L(K)")
    args = parser.parse_args(argv)
    root = args.root
    overfitting(root)
    standard = load(root, "standard_width")
    standard_groups = search_table("Standard recipe per width", standard) if standard else []
    tuned_groups, by_width = [], {}
    for width in WIDTHS:
        sweep = load(root, f"tuned_d{width}")
        if sweep is not None:
            tuned_groups += search_table(f"Tuned recipe, d_model {width}", sweep)
            by_width[width] = tuned_groups[-1]
    measured = [g for g in tuned_groups if len(g["runs"])]
    if measured:
        print("\noptimal weight decay per width (tuned): " + ", ".join(
            f"{int(g['runs']['n_params'].iloc[0]):,} parameters: {g['wd']:g} "
            f"({g['wd'] / 0.01:g}× standard; {g['status']})" for g in measured
        ))  # fmt: skip
    scaling_in_n("standard", standard_groups)
    scaling_in_n("tuned", tuned_groups)
    by_k = {w: ensembles(root, by_width.get(w), w, args.members) for w in WIDTHS}
    joint_limit(by_k, by_width)
    found = [*by_k.values(), retuned(root, args.members)]
    ensemble = min((e for e in found if e), key=lambda e: e["best"], default=None)
    std32 = next((g for g in standard_groups if g["group"].get("model.d_model") == 32), None)
    best_single = min((g["runs"]["final_excess_loss"].mean() for g in measured), default=None)
    targets = {"tuned (best width)": best_single}
    if ensemble:
        targets["ensemble (largest K, measured)"] = ensemble["best"]
        targets["ensemble (K → ∞, extrapolated)"] = ensemble["limit"]
    data_efficiency(root, std32, targets)
    count = next((g["runs"]["count_excess_graph"].iloc[0] for g in measured), None)
    for label, value in targets.items():
        if value is not None and count:
            print(
                f"{label}: excess {value:.5f} = {value / count:.2f}× the neighbour-aware count "
                f"learner ({count:.5f}) on the same {LARGEST * CONTEXT:,} tokens"
            )
    total = sum(seconds(sw) for sw in map(lambda n: load_quiet(root, n), ALL) if sw)
    print(f"\nrun time of every study run present (one thread each): {total:.0f} s")


ALL = (
    "standard_epochs", "standard_width", *CORPORA, *(f"tuned_d{w}" for w in WIDTHS),
    *(f"ensemble_d{w}" for w in WIDTHS), "ensemble_retuned_d32",
)  # fmt: skip


def load_quiet(root: Path, name: str):
    import interp

    return interp.load_sweep(root / name) if (root / name / "sweep.json").exists() else None


if __name__ == "__main__":
    main()
