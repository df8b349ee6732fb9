"""Which checkpoints a slider shows, and deciding it while a run is being analyzed.

`pick_steps` chooses at most `max_steps` checkpoints: evenly spaced by index, always the
first, the last and the phase boundaries. The report's heaviest views (circuit graph,
circuitsvis attention) show `pick_steps(steps, MAX_FIGURE_STEPS, phase boundaries)`, but
the boundaries (`circuits.progress.compute_phases`: first crossings of the accuracies) are
known only once every checkpoint is analyzed, and a checkpoint's circuit graph costs more
than the rest of its analysis. `FigureSteps` therefore decides during the analysis' one pass
whether a checkpoint may be shown, so that its figure data is computed then or never:

- it may be on the evenly spaced grid, which depends only on the number of steps and on how
  many distinct boundaries are kept (0 to 3): on any of those 4 grids that the boundaries
  already fixed by the earlier checkpoints leave possible;
- it may be a phase boundary: its own row reaches a phase's threshold, and the earlier rows
  do not already place that phase's first crossing before it.

"Fixed by the earlier checkpoints" means by the longest prefix of the run whose rows are all
known (another worker may still be analyzing a checkpoint): first crossings there are final.
On the 40k-step mod-add run that is 72 of 422 checkpoints (the 4 grids together: 133).

A checkpoint that fails to load shifts the grid of the loadable ones; then a few picked steps
may lack figure data, and the views show the others.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import Any

from circuits.progress import compute_phases

#: Checkpoints shown by the circuit-graph and circuitsvis sliders.
MAX_FIGURE_STEPS = 40


def pick_steps(steps: Sequence[int], max_steps: int = 60, keep: Sequence[int | None] = ()) -> list[int]:
    """At most `max_steps` of `steps` (evenly spaced by index), always the first, last and `keep`."""
    steps = list(steps)
    if len(steps) <= max_steps:
        return steps
    chosen = {steps[0], steps[-1]} | {s for s in keep if s is not None and s in steps}
    n = max(max_steps - len(chosen), 1)
    chosen |= {steps[round(i * (len(steps) - 1) / n)] for i in range(n + 1)}
    return sorted(chosen)


def _reached(row: dict[str, Any]) -> tuple[bool, bool, bool]:
    """Whether `row` reaches the memorized, cleanup and generalized thresholds (as
    `compute_phases` judges them: asked of it, after a memorized row that gained nothing)."""
    alone, after = compute_phases([row]), compute_phases([{"step": row["step"] - 1, "train_acc": 1.0, "test_acc": 0.0}, row])
    return alone.memorized == row["step"], after.cleanup_start == row["step"], after.generalized == row["step"]


class FigureSteps:
    """Tells, checkpoint by checkpoint and from any thread, whether a slider may show it.

    Every checkpoint of `steps` is reported once, by `wants(step, row)` or `skipped(step)`.
    A checkpoint off the grid may be a phase boundary unless the rows of every earlier step
    (a prefix of the run, so its first crossings are final) already fix that boundary.
    """

    def __init__(self, steps: Sequence[int], max_steps: int = MAX_FIGURE_STEPS):
        self.steps = sorted(steps)
        #: the grid for each number of kept boundaries; their union: every step that may be on it
        self.grids = [set(self.steps if len(self.steps) <= max_steps else pick_steps(self.steps, max_steps - n_kept, ()))
                      for n_kept in range(4)]
        self.grid = set().union(*self.grids)
        self._rows: dict[int, dict[str, Any] | None] = {}  # None: skipped
        self._memorized: set[int] = set()  # known steps whose row reaches the memorized threshold
        self._lock = threading.Lock()

    def skipped(self, step: int) -> None:
        with self._lock:
            self._rows[step] = None

    def wants(self, step: int, row: dict[str, Any], always: bool = False) -> bool:
        """Whether `step` (whose table row is `row`) may be shown; records the row."""
        row = {**row, "step": step}
        memorized, cleanup, generalized = _reached(row)
        with self._lock:
            earlier = self.steps[: bisect.bisect_left(self.steps, step)]
            n_known = next((i for i, s in enumerate(earlier) if s not in self._rows), len(earlier))
            prefix = [r for r in (self._rows[s] for s in earlier[:n_known]) if r is not None]
            # Cleanup and generalization come at or after memorization: could it be done by now?
            could_follow = memorized or n_known < len(earlier) or any(s in self._memorized for s in earlier)
            self._rows[step] = row
            if memorized:
                self._memorized.add(step)
        if always or (not prefix and n_known == len(earlier)):  # ... or the first that loads
            return True
        fixed = compute_phases(prefix)  # first crossings within a fully known prefix are final
        boundaries = [fixed.memorized, fixed.cleanup_start, fixed.generalized]
        n_fixed = len({b for b in boundaries if b is not None} - {self.steps[0], self.steps[-1]})
        n_open = boundaries.count(None)
        return (any(step in self.grids[n] for n in range(n_fixed, min(n_fixed + n_open, 3) + 1))
                or fixed.memorized is None and memorized
                or fixed.cleanup_start is None and cleanup and could_follow
                or fixed.generalized is None and generalized and could_follow)
