"""Which checkpoints a slider shows, and deciding it while a run is being analyzed.

`pick_steps` chooses at most `max_steps` checkpoints: evenly spaced by index, always the
first, the last and the phase boundaries. The report's heaviest views (circuit graph,
circuitsvis attention) show `pick_steps(steps, MAX_FIGURE_STEPS, phase boundaries)`, but
the boundaries (the task family's milestones, `circuits.analyses.phases`: first crossings of metric
columns) are known only once every checkpoint is analyzed, and a checkpoint's circuit graph costs
more
than the rest of its analysis. `SliderSteps` therefore decides during the analysis' one pass
whether a checkpoint may be shown, so that its figure data is computed then or never:

- it may be on the evenly spaced grid, which depends only on the number of steps and on how
  many distinct boundaries are kept (0 to the number of milestones): on any of those grids
  that the boundaries already fixed by the earlier checkpoints leave possible ("fixed" by
  the longest prefix of the run whose rows are all known; first crossings there are final;
  on the 40k-step mod-add run that is 72 of 422 checkpoints, the grids together: 133);
- it may be a phase boundary: its own row reaches a phase's threshold, and the rows of all
  earlier checkpoints known so far (another worker may still be analyzing some) do not
  already place that phase's first crossing before it.

A checkpoint that fails to load shifts the grid of the loadable ones; then a few picked steps
may lack figure data, and the views show the others.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import Any

from circuits.analyses.phases import MilestoneSpec, compute_phases, reaches

#: Checkpoints shown by the circuit-graph and circuitsvis sliders.
MAX_FIGURE_STEPS = 40


def pick_steps(
    steps: Sequence[int], max_steps: int = 60, keep: Sequence[int | None] = ()
) -> list[int]:
    """At most `max_steps` of `steps` (evenly spaced by index), always the first, last and
    `keep`."""
    steps = list(steps)
    if len(steps) <= max_steps:
        return steps
    chosen = {steps[0], steps[-1]} | {s for s in keep if s is not None and s in steps}
    n = max(max_steps - len(chosen), 1)
    chosen |= {steps[round(i * (len(steps) - 1) / n)] for i in range(n + 1)}
    return sorted(chosen)


class SliderSteps:
    """Tells, checkpoint by checkpoint and from any thread, whether a slider may show it.

    Every checkpoint of `steps` is reported once, by `wants(step, row)` or `skipped(step)`.
    A checkpoint off the grid may be a milestone of `specs` (the family's phases) unless the
    rows of every earlier step (a prefix of the run, so its first crossings are final)
    already fix that milestone. A milestone searched only after another can fall on this
    step only if that other one could be reached by now (conservatively: by this row, by an
    earlier known row, or by an earlier row not known yet); erring that way computes figure
    data that a slider may not show, never the reverse.
    """

    def __init__(
        self,
        steps: Sequence[int],
        specs: Sequence[MilestoneSpec],
        max_steps: int = MAX_FIGURE_STEPS,
    ):
        self.steps = sorted(steps)
        self.specs = tuple(specs)
        #: the grid for each number of kept boundaries; their union: every step that may be on it
        self.grids = [
            set(
                self.steps
                if len(self.steps) <= max_steps
                else pick_steps(self.steps, max_steps - k)
            )
            for k in range(len(self.specs) + 1)
        ]
        self.grid = set().union(*self.grids)
        self._rows: dict[int, dict[str, Any] | None] = {}  # None: skipped
        self._reached: dict[str, set[int]] = {spec.name: set() for spec in self.specs}
        self._lock = threading.Lock()

    def skipped(self, step: int) -> None:
        with self._lock:
            self._rows[step] = None

    def wants(self, step: int, row: dict[str, Any], always: bool = False) -> bool:
        """Whether `step` (whose table row is `row`) may be shown; records the row."""
        row = {**row, "step": step}
        reached = {
            spec.name: reaches(row, spec.column, spec.threshold, spec.below) for spec in self.specs
        }
        with self._lock:
            earlier = self.steps[: bisect.bisect_left(self.steps, step)]
            n_known = next((i for i, s in enumerate(earlier) if s not in self._rows), len(earlier))
            prefix = [r for r in (self._rows[s] for s in earlier[:n_known]) if r is not None]
            unknown_before = n_known < len(earlier)
            could = {
                name: reached[name] or unknown_before or any(s < step for s in self._reached[name])
                for name in reached
            }
            self._rows[step] = row
            for name, hit in reached.items():
                if hit:
                    self._reached[name].add(step)
        if always or (not prefix and n_known == len(earlier)):  # ... or the first that loads
            return True
        # First crossings within a fully known prefix are final: the boundaries fixed so far
        # narrow the grids that remain possible.
        fixed = compute_phases(prefix, self.specs, ())
        boundaries = [fixed.milestone(spec.name) for spec in self.specs]
        n_fixed = len({b for b in boundaries if b is not None} - {self.steps[0], self.steps[-1]})
        n_open = boundaries.count(None)
        limit = min(n_fixed + n_open, len(self.specs))
        if any(step in self.grids[n] for n in range(n_fixed, limit + 1)):
            return True
        return any(
            fixed.milestone(spec.name) is None
            and reached[spec.name]
            and (spec.after is None or could[spec.after])
            for spec in self.specs
        )
