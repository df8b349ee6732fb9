"""Collapse detection and the `best` checkpoint: pure functions over metric rows.

A collapse is a training metric that falls far below its best and stays there: the circuit
(or the memorized table) stopped deciding the answers the model once got right. Both the
trainer (while it runs) and `interp analyze` (afterwards, on its own table) call
`detect_collapses` with the same rule, so the two never disagree.

The rule is the task's: it watches the accuracy of the task's main training split
(`train_acc` for modular tasks, `train_inferred_acc` for the entity tasks). A family whose
accuracy is capped by design can pass a loss-based rule (`higher_is_better=False`).

`best_checkpoint` never looks at test metrics: it picks the highest validation accuracy
(or, for a family whose accuracy is capped by design, the lowest validation loss) when the
run has a validation split, and otherwise the lowest training loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CollapseRule:
    """Fire when `metric` is worse than its best so far by more than `drop` for `patience`
    checkpoints in a row. It re-arms once the metric is back within `drop` of its best."""

    metric: str
    drop: float = 0.20
    patience: int = 3
    higher_is_better: bool = True

    def is_down(self, value: float, best: float) -> bool:
        return value < best - self.drop if self.higher_is_better else value > best + self.drop


@dataclass(frozen=True)
class CollapseEvent:
    step: int  # the checkpoint at which the rule fired (the `patience`-th one down)
    first_step: int  # the first checkpoint of the run of low values
    metric: str
    value: float  # the metric at `step`
    best: float
    best_step: int

    def describe(self) -> str:
        return (
            f"collapse at step {self.step}: {self.metric} {self.value:.3f} has stayed more than "
            "the "
            f"allowed drop below its best {self.best:.3f} (step {self.best_step}) since step "
            f"{self.first_step}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "collapse", **asdict(self)}


def rule_for_splits(train_splits: Sequence[str]) -> CollapseRule:
    """The accuracy rule on the task's main training split (the last one it names)."""
    return CollapseRule(metric=f"{train_splits[-1]}_acc")


def detect_collapses(rows: Sequence[dict[str, Any]], rule: CollapseRule) -> list[CollapseEvent]:
    """Every collapse in `rows` (checkpoint metric rows, in step order)."""
    events: list[CollapseEvent] = []
    best, best_step = None, None
    run_start, run_length, armed = None, 0, True
    for row in sorted(rows, key=lambda r: r["step"]):
        value = row.get(rule.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if best is None or (value > best if rule.higher_is_better else value < best):
            best, best_step = value, int(row["step"])
        if rule.is_down(value, best):
            if run_length == 0:
                run_start = int(row["step"])
            run_length += 1
            if armed and run_length >= rule.patience:
                events.append(
                    CollapseEvent(
                        int(row["step"]),
                        run_start,
                        rule.metric,
                        float(value),
                        float(best),
                        best_step,
                    )
                )
                armed = False
        else:
            run_length, armed = 0, True
    return events


@dataclass(frozen=True)
class BestCheckpoint:
    step: int
    criterion: str  # the metric it maximizes (accuracy) or minimizes (loss)
    value: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def best_checkpoint(
    rows: Sequence[dict[str, Any]],
    train_splits: Sequence[str],
    has_validation: bool,
    criterion: str = "val_acc",
) -> BestCheckpoint | None:
    """Highest `val_acc` (ties: lower `val_loss`, then the earlier step) with a validation split,
    or the lowest `val_loss` with `criterion="val_loss"` (a family's `best_criterion`);
    otherwise the lowest loss on the main training split. Never a test metric."""

    def finite(value: Any) -> bool:
        return isinstance(value, (int, float)) and math.isfinite(value)

    if has_validation and criterion == "val_loss":
        candidates = [r for r in rows if finite(r.get("val_loss"))]
        if not candidates:
            return None
        row = min(candidates, key=lambda r: (r["val_loss"], r["step"]))
        return BestCheckpoint(int(row["step"]), "val_loss", float(row["val_loss"]))
    if has_validation:
        candidates = [r for r in rows if finite(r.get("val_acc"))]
        if not candidates:
            return None
        row = min(candidates, key=lambda r: (-r["val_acc"], r.get("val_loss", 0.0), r["step"]))
        return BestCheckpoint(int(row["step"]), "val_acc", float(row["val_acc"]))
    key = f"{train_splits[-1]}_loss"
    candidates = [r for r in rows if finite(r.get(key))]
    if not candidates:
        return None
    row = min(candidates, key=lambda r: (r[key], r["step"]))
    return BestCheckpoint(int(row["step"]), key, float(row[key]))
