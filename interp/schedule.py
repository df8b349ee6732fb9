"""When a run checkpoints, when it stops early, where it runs, and what a finished training call
returns."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.collapse import CollapseEvent
from interp.errors import TrainingError


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    final_step: int
    last_row: dict[str, Any]
    stopped_early: bool
    #: every collapse event of the run so far (`interp.collapse`), also in metrics.jsonl
    collapses: tuple[CollapseEvent, ...] = ()
    #: why it stopped before the end of its schedule: "val_acc", "collapse" or None
    stop_reason: str | None = None
    #: examples behind each `{split}_acc` column of the rows, e.g. {"test_ood_acc": 95}
    split_sizes: dict[str, int] = field(default_factory=dict)


def checkpoint_schedule(steps: int, every: int, log_until: int, per_decade: int = 8) -> list[int]:
    """Step 0, log-spaced steps below `log_until`, every `every` steps, and the final step."""
    schedule = {0, steps}
    schedule.update(range(every, steps + 1, every))
    if log_until > 1:
        n_points = max(2, int(math.log10(log_until) * per_decade))
        for i in range(n_points + 1):
            schedule.add(min(steps, int(round(log_until ** (i / n_points)))))
    return sorted(s for s in schedule if 0 <= s <= steps)


def val_acc_streak(rows: list[dict[str, Any]], threshold: float) -> int:
    """Checkpoints in a row (ending at the latest) at or above the early-stop validation
    accuracy `threshold`; 0 when early stopping is off (`threshold <= 0`)."""
    streak = 0
    if threshold <= 0:
        return 0
    for row in reversed(rows):
        # Step 0 never counts (as in an uninterrupted run, whose streak starts after it).
        if row["step"] == 0 or row.get("val_acc", 0) < threshold:
            break
        streak += 1
    return streak


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device: 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(device)
