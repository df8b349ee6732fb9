"""Issue 24's numbers (docs/experiments.md §8): distillation on a fixed corpus, and what the
recipes change inside the model, on random walks.

    python -m experiments.distillation ROOT

ROOT holds issue 23's sweep folders (`experiments.infinite_compute`) and these two, run from
ROOT with their specs in experiments/sweeps/fixed_data/:

    distill_d16/        students of the 8-member tuned d_model-16 ensemble, teacher_frac 0 … 1
    distill_long_d16/   its 90 % student with twice the steps
    self_distill_d16/   students of one tuned d_model-16 model (its seed 0), teacher_frac 0.5, 0.9

Every loss is the excess over H on the same 256 test walks; comparisons between two
predictors are paired (the per-walk difference of their excess, with its standard error);
the kept fraction of the ensemble's gain is (single − student) / (single − ensemble), the
single model being the mean of the ensemble's 8 members (each trained with the student's
recipe and compute). Selection (the distilled model inside) reads validation walks only.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import numpy as np
import torch

import interp
from circuits.families.graph_walk import inside
from circuits.families.graph_walk.limits import kt_excess_loss, paired_excess
from circuits.families.graph_walk.task import walk_graph

TUNED, MEMBERS, STANDARD = "tuned_d16", "ensemble_d16", "standard_width"
OVERFIT = "standard_epochs"  # d_model 32, lr 0.01, wd 0.01: epochs 1 … 32


def runs_of(root: Path, name: str, **axes) -> list[Path]:
    """The done runs of sweep `name` whose axes equal `axes`, in seed order."""
    sweep = interp.load_sweep(root / name)
    table = sweep.done()
    for key, value in axes.items():
        table = table[np.isclose(table[key].astype(float), value)]
    return [sweep.path / "runs" / r for r in table.sort_values("seed")["run"]]


class Bench:
    """The test walks, H and the true log-probabilities, shared by every predictor."""

    def __init__(self, run_dir: Path):
        run = interp.load_run(run_dir)
        self.graph = walk_graph(run.config.task)
        self.tokens, labels = run.task.split("test")
        self.next = labels
        self.labels = labels.reshape(-1)
        self.corpus, self.corpus_next = run.task.split("train")
        self.log_p = torch.log(torch.as_tensor(self.graph.transition).clamp_min(1e-300))
        self.visits = np.bincount(self.corpus.reshape(-1).numpy(), minlength=self.graph.n)
        from circuits.families.graph_walk.limits import transition_counts

        walks = torch.cat([self.corpus, self.corpus_next[:, -1:]], 1)
        self.counts = transition_counts(walks, self.graph.n)

    def excess(self, predict) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        log_q = predict(self.tokens).flatten(0, 1)
        mean, se, per_walk = paired_excess(log_q, self.tokens, self.labels, self.log_p)
        return mean, se, per_walk, log_q


def models(paths: list[Path]) -> list:
    """Each run's last checkpoint, loaded once (members are read by several sections)."""
    return [final_model(Path(path)) for path in paths]


@functools.cache
def final_model(path: Path):
    run = interp.load_run(path)
    return run.model_at(run.steps[-1])


def paired(a: torch.Tensor, b: torch.Tensor) -> str:
    d = a - b
    return f"{float(d.mean()):+.5f} ± {float(d.std() / len(d) ** 0.5):.5f}"


def distillation(root: Path, bench: Bench, members: list[Path]) -> dict:
    print("## Teacher: the 8-member ensemble (logit averaging) and its members")
    singles = [bench.excess(inside.predictor(models([p]))) for p in members]
    single = torch.stack([s[2] for s in singles]).mean(0)  # per-walk mean of the members
    ensemble = bench.excess(inside.predictor(models(members)))
    for path, s in zip(members, singles):
        print(f"  member {path.name}: {s[0]:.5f} ± {s[1]:.5f}")
    mean_single = float(single.mean())
    gain = mean_single - ensemble[0]
    print(f"  members' mean {mean_single:.5f}; ensemble {ensemble[0]:.5f} ± {ensemble[1]:.5f}")
    print(f"  ensemble − members' mean (paired): {paired(ensemble[2], single)}")

    print("\n## Students of member size (distill_d16): excess, kept fraction of the gain")
    sweep = interp.load_sweep(root / "distill_d16")
    table = sweep.done().sort_values(["task.teacher_frac", "seed"])
    by_frac: dict[float, list] = {}
    for _, row in table.iterrows():
        result = bench.excess(inside.predictor(models([sweep.path / "runs" / row["run"]])))
        kept = (mean_single - result[0]) / gain
        by_frac.setdefault(float(row["task.teacher_frac"]), []).append((row, result, kept))
        print(
            f"  frac {row['task.teacher_frac']:.2f} seed {row['seed']}: {result[0]:.5f} ± "
            f"{result[1]:.5f} (val {row['final_val_loss']:.5f}, train loss "
            f"{row['final_train_loss']:.4f}); − members' mean {paired(result[2], single)}; "
            f"− ensemble {paired(result[2], ensemble[2])}; kept {kept:.2f}; {row['wall_s']:.0f} s"
        )
    undistilled = {r[0]["seed"]: r[1] for r in by_frac.get(0.0, [])}
    for frac, rows in by_frac.items():
        if frac == 0.0:
            continue
        for row, result, _ in rows:
            if row["seed"] in undistilled:
                base = undistilled[row["seed"]]
                print(
                    f"  frac {frac:.2f} seed {row['seed']} − frac 0 of its seed (paired): "
                    f"{paired(result[2], base[2])}"
                )
    for frac, rows in by_frac.items():
        kept = np.array([r[2] for r in rows])
        excess = np.array([r[1][0] for r in rows])
        print(
            f"  frac {frac:.2f}: mean excess {excess.mean():.5f}, kept {kept.mean():.2f} "
            f"{kept.round(2).tolist()}"
        )
    return {"ensemble": ensemble, "single": mean_single, "by_frac": by_frac, "sweep": sweep}


def longer(root: Path, bench: Bench, found: dict) -> None:
    print("\n## The 90 % student with twice the steps (distill_long_d16)")
    if not (root / "distill_long_d16" / "sweep.json").exists():
        print("  not measured")
        return
    sweep = interp.load_sweep(root / "distill_long_d16")
    ensemble, single = found["ensemble"], found["single"]
    for _, row in sweep.done().iterrows():
        result = bench.excess(inside.predictor(models([sweep.path / "runs" / row["run"]])))
        kept = (single - result[0]) / (single - ensemble[0])
        print(
            f"  seed {row['seed']}, {row['last_step']} steps: {result[0]:.5f} ± {result[1]:.5f}; "
            f"− ensemble {paired(result[2], ensemble[2])}; kept {kept:.2f}; {row['wall_s']:.0f} s"
        )


def self_distillation(root: Path, bench: Bench, teacher: Path) -> None:
    print("\n## Self-distillation (self_distill_d16): teacher = one tuned model")
    if not (root / "self_distill_d16" / "sweep.json").exists():
        print("  not measured")
        return
    base = bench.excess(inside.predictor(models([teacher])))
    print(f"  teacher {teacher.name}: {base[0]:.5f} ± {base[1]:.5f}")
    sweep = interp.load_sweep(root / "self_distill_d16")
    for _, row in sweep.done().sort_values(["task.teacher_frac", "seed"]).iterrows():
        result = bench.excess(inside.predictor(models([sweep.path / "runs" / row["run"]])))
        print(
            f"  frac {row['task.teacher_frac']:.2f} seed {row['seed']}: {result[0]:.5f} ± "
            f"{result[1]:.5f}; − teacher (paired) {paired(result[2], base[2])}; "
            f"{row['wall_s']:.0f} s"
        )


def look_inside(root: Path, bench: Bench, recipes: dict[str, list[Path]]) -> None:
    graph = bench.graph
    print("\n## Inside: per-node expected excess (test walks) by corpus visits and by degree")
    results, context = {}, {}
    for name, paths in recipes.items():
        predict = inside.predictor(models(paths))
        log_q = predict(bench.tokens).flatten(0, 1)
        results[name] = inside.node_excess(log_q, bench.tokens.reshape(-1), graph.transition)
        P = graph.transition
        context[name] = (
            inside.context_dependence(predict, bench.corpus, bench.corpus_next[:, -1], P),
            inside.context_dependence(predict, bench.tokens, bench.next[:, -1], P),
        )
    from circuits.families.graph_walk.limits import kt_predictor

    with np.errstate(divide="ignore"):  # q = 0 off the support
        counts = torch.as_tensor(np.log(kt_predictor(bench.counts, graph.transition > 0)))
    current = bench.tokens.reshape(-1)
    results["add-½ counts"] = inside.node_excess(counts[current], current, graph.transition)
    print("  totals: " + ", ".join(f"{k} {v.total:.5f}" for k, v in results.items()))
    per_neighbour = bench.visits / graph.degrees
    groups = (
        (bench.visits.astype(float), "corpus visits"),
        (graph.degrees, "degree"),
        (per_neighbour.round(1), "corpus visits per neighbour"),
    )
    for key, label in groups:
        for row in inside.by_bins(results, key, 3, label):
            cells = ", ".join(
                f"{name} {row[f'{name} kl']:.4f} ({row[f'{name} contribution']:.5f})"
                for name in results
            )
            print(f"  {row['group']} ({row['nodes']} nodes, {row['share']:.2f} of tokens): {cells}")
    print("  mean node KL (its contribution to the excess) per group")
    print("\n## Context dependence at the last position: resampled past, same current node")
    for name, (corpus, test) in context.items():
        print(
            f"  {name}: corpus walks Δloss {corpus.delta_loss:+.4f} ± {corpus.delta_loss_se:.4f}, "
            f"KL {corpus.kl:.2e} ± {corpus.kl_se:.1e}; test walks Δloss {test.delta_loss:+.4f} ± "
            f"{test.delta_loss_se:.4f}, KL {test.kl:.2e} ± {test.kl_se:.1e}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    root, start = args.root, time.perf_counter()
    tuned = runs_of(root, TUNED, **{"train.lr": 0.3, "train.weight_decay": 0.0, "epochs": 64})
    members = tuned + runs_of(root, MEMBERS)
    bench = Bench(members[0])
    graph = bench.graph
    print(
        f"H {graph.entropy_rate():.5f}; count learners on the corpus: "
        f"{kt_excess_loss(graph, bench.counts, True):.5f} knowing the neighbours, "
        f"{kt_excess_loss(graph, bench.counts, False):.5f} over all nodes\n"
    )
    found = distillation(root, bench, members)
    longer(root, bench, found)
    self_distillation(root, bench, tuned[0])
    # The distilled model: the student with the lowest validation loss (never the test walks).
    candidates = []
    for name in ("distill_d16", "distill_long_d16"):
        if (root / name / "sweep.json").exists():
            sweep = interp.load_sweep(root / name)
            for _, row in sweep.done().iterrows():
                if row["task.teacher_frac"] > 0:
                    candidates.append((row["final_val_loss"], sweep.path / "runs" / row["run"]))
    best_val, best = min(candidates)
    print(f"\n(distilled model for the inside view: {best}, val loss {best_val:.5f})")
    standard = runs_of(root, STANDARD, **{"model.d_model": 16, "train.lr": 0.3, "epochs": 64})[:1]
    overfit = {
        f"standard d32 {epochs} ep": runs_of(
            root, OVERFIT, **{"train.lr": 0.01, "train.steps": steps}
        )
        for epochs, steps in ((4, 512), (16, 2048), (32, 4096))
    }
    recipes = {
        "standard": standard,
        "tuned": tuned[:1],
        "ensemble": members,
        "distilled": [best],
        **overfit,
    }
    look_inside(root, bench, recipes)
    print(f"\nthis script: {time.perf_counter() - start:.0f} s")
    print(json.dumps({"seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
