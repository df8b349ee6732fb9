"""Where a comparison run's errors are: accuracy by |v1 − v2| and by whether the model knows
both entities' atomic facts, on each split, at the run's last checkpoint.

    python -m experiments.comparison_errors RUN_DIR [RUN_DIR ...]

A model that compares exact values is right at every distance; one that compares
approximate values fails at ties (=) and adjacent values first. A model whose comparison
circuit reads the OOD entities' stored values is right on test-OOD whenever it knows both
atomic facts. (docs/experiments.md §3.)
"""

from __future__ import annotations

import sys

import torch

import interp


@torch.inference_mode()
def predictions(model, tokens: torch.Tensor, batch: int = 2048) -> torch.Tensor:
    from interp.model import answer_logits

    return torch.cat(
        [
            answer_logits(model, tokens[i : i + batch]).argmax(-1)
            for i in range(0, len(tokens), batch)
        ]
    )


def report(path: str) -> None:
    run = interp.load_run(path)
    step = run.steps[-1]
    model, data = run.model_at(step), run.task
    ex = data.extras
    idx = data.splits["train_atomic"]
    known = torch.zeros_like(ex["kb_value"], dtype=torch.bool)
    known[ex["e1"][idx], ex["attribute"][idx]] = (
        predictions(model, data.tokens[idx]) == data.labels[idx]
    )
    ood = ex["kb_is_ood"]
    print(
        f"{path} @ step {step}: atomic facts known: ID entities "
        f"{known[~ood].float().mean():.3f}, OOD entities {known[ood].float().mean():.3f}"
    )
    for split in ("train_inferred", "test_id", "test_ood"):
        idx = data.splits[split]
        ok = predictions(model, data.tokens[idx]) == data.labels[idx]
        a, e1, e2 = ex["attribute"][idx], ex["e1"][idx], ex["e2"][idx]
        both = known[e1, a] & known[e2, a]
        distance = (ex["v1"][idx] - ex["v2"][idx]).abs()
        by_distance = ", ".join(
            f"{label} {ok[m].float().mean():.3f} ({m.float().mean():.0%})"
            for label, m in (
                ("=", distance == 0),
                ("|dv|=1", distance == 1),
                ("2", distance == 2),
                ("3", distance == 3),
                (">=4", distance >= 4),
            )
        )
        print(
            f"  {split}: {ok.float().mean():.3f} (n={len(ok)}); both atomic facts known "
            f"({both.float().mean():.0%}): {ok[both].float().mean():.3f}; by |v1 - v2| "
            f"(share): {by_distance}"
        )


if __name__ == "__main__":
    for path in sys.argv[1:]:
        report(path)
