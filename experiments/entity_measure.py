"""Measure an entity-task run: circuit_score and logit lens at every checkpoint, probes and
patching at every `--full-every` steps; prints when each measure first crosses its threshold.

    python experiments/entity_measure.py runs/two-hop [--full-every 1000]

Rows are cached in RUN_DIR/analysis/entity_measure.jsonl, so it can be re-run while the
run is still training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from circuits.families.entity.analysis import analyze_entity_checkpoint, random_init_model
from interp.registry import family_of
from interp.runs import load_run


def first(rows, key, threshold):
    return next((r["step"] for r in rows if r.get(key, float("nan")) >= threshold), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--full-every", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run = load_run(args.run_dir)
    family = family_of(run.config)
    cache = args.run_dir / "analysis" / "entity_measure.jsonl"
    cache.parent.mkdir(exist_ok=True)
    rows = (
        {r["step"]: r for r in map(json.loads, cache.read_text().splitlines())}
        if cache.exists()
        else {}
    )
    model, random_model = run.new_model(), random_init_model(run.config)
    model.eval()
    with cache.open("a") as out:
        for step in run.steps:
            full = step % args.full_every == 0
            if step in rows and (
                not full or "probe_bridge_acc_L1" in rows[step] or "probe_v1_acc_L1" in rows[step]
            ):
                continue
            run.load_weights_into(model, step)
            parts = {"logit_lens", "patching", "probes"} if full else {"logit_lens"}
            row = analyze_entity_checkpoint(
                family, model, run.task, run.config, parts, random_model=random_model, step=step
            ).row
            rows[step] = row
            out.write(json.dumps(row) + "\n")
            out.flush()
    ordered = [rows[s] for s in sorted(rows)]
    n_layers = run.config.model.n_layers
    mid = family.intermediate
    report = {
        **{
            f"{key}>={t}": first(ordered, key, t)
            for key in ("circuit_score", "circuit_transfer", "test_id_acc", "train_inferred_acc")
            for t in (0.25, 0.5, 0.75, 0.95)
        },
        **{
            f"lens_{mid}_mrr_L{layer}>=0.5": first(ordered, f"lens_{mid}_mrr_L{layer}", 0.5)
            for layer in range(1, n_layers)
        },
    }
    print(json.dumps(report))
    for r in ordered:
        keys = [
            "train_atomic_acc",
            "train_inferred_acc",
            "test_id_acc",
            "test_ood_acc",
            "circuit_score",
            "circuit_transfer",
            "circuit_layer",
        ]
        keys += [f"lens_{mid}_mrr_L{layer}" for layer in range(n_layers + 1)]
        keys += [
            k
            for k in (f"probe_{mid}_acc_L2", f"probe_{mid}_random_L2", f"probe_{mid}_shuffled_L2")
            if k in r
        ]
        print(
            r["step"],
            " ".join(f"{k.replace('_acc', '').replace('lens_', '')}={r[k]:.3f}" for k in keys),
        )


if __name__ == "__main__":
    main()
