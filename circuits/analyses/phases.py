"""Phases of a run: named spans of training steps between milestones read off the metrics.

A family defines its phases once (`circuits.families`), as milestones — the first
checkpoint at which a metric column reaches a threshold, at or after another milestone
when they must come in order — and spans between them. The CLI summary, summary.json and
the report all read the same `Phases` object. A span whose start was never reached is
absent (start None); one whose end was not reached is still open (end None). Because a
span's end milestone is searched only from its start on, a span is never inverted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence


@dataclass(frozen=True)
class MilestoneSpec:
    name: str
    #: shown on the timeline, e.g. "test acc ≥ 99%"
    label: str
    column: str
    threshold: float
    #: the milestone is searched only from this earlier milestone's step on (None: from step 0)
    after: str | None = None
    #: reached when the column falls to <= threshold (a loss) instead of rising to >= it
    below: bool = False


@dataclass(frozen=True)
class Milestone:
    name: str
    label: str
    step: int | None


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    start: int | None
    end: int | None


@dataclass(frozen=True)
class Phases:
    """Spans in training order and the milestones that bound them (see the module docstring)."""

    spans: tuple[PhaseSpan, ...]
    milestones: tuple[Milestone, ...] = ()

    def to_dict(self) -> dict[str, dict[str, int | None]]:
        return {span.name: {"start": span.start, "end": span.end} for span in self.spans}

    def milestone(self, name: str) -> int | None:
        return {m.name: m.step for m in self.milestones}[name]

    def span(self, name: str) -> PhaseSpan:
        return {s.name: s for s in self.spans}[name]

    def boundaries(self) -> list[int]:
        """Steps where a milestone was reached (kept by checkpoint sliders)."""
        return [m.step for m in self.milestones if m.step is not None]

    def ended_by(self, collapses: Sequence[Any]) -> Phases:
        """The same phases with the last span (the stable one) ending where the first collapse
        after its start began (`interp.collapse.CollapseEvent.first_step`)."""
        if not self.spans or self.spans[-1].start is None:
            return self
        last = self.spans[-1]
        later = [e.first_step for e in collapses if e.first_step >= last.start]
        if not later:
            return self
        return replace(self, spans=(*self.spans[:-1], replace(last, end=min(later))))

    def describe(self) -> str:
        """`name start–end; …` over the spans that happened."""
        return "; ".join(
            f"{s.name.replace('_', ' ')} {s.start}–{s.end if s.end is not None else '…'}"
            for s in self.spans
            if s.start is not None
        )


def reaches(row: dict[str, Any], column: str, threshold: float, below: bool = False) -> bool:
    """Whether `row` has a number (not NaN) in `column` that is >= `threshold` (<= with
    `below`)."""
    value = row.get(column)
    if not isinstance(value, (int, float)) or math.isnan(value):
        return False
    return value <= threshold if below else value >= threshold


def first_step(
    rows: Sequence[dict[str, Any]],
    column: str,
    threshold: float,
    after: int = 0,
    below: bool = False,
) -> int | None:
    """First step >= `after` whose `column` reaches `threshold` (rows sorted by step)."""
    for row in rows:
        if row["step"] >= after and reaches(row, column, threshold, below):
            return int(row["step"])
    return None


def compute_phases(
    rows: Sequence[dict[str, Any]],
    specs: Sequence[MilestoneSpec],
    spans: Sequence[tuple[str, str | None, str | None]],
) -> Phases:
    """Milestones from `specs` (in order; each after its `after` milestone), then spans
    `(name, start milestone or None for step 0, end milestone or None for open-ended)`."""
    rows = sorted(rows, key=lambda r: r["step"])
    steps: dict[str, int | None] = {}
    for spec in specs:
        after = 0 if spec.after is None else steps[spec.after]
        steps[spec.name] = (
            None
            if after is None
            else first_step(rows, spec.column, spec.threshold, after, spec.below)
        )
    out = []
    for name, start_name, end_name in spans:
        start = 0 if start_name is None else steps[start_name]
        end = None if end_name is None or start is None else steps[end_name]
        out.append(PhaseSpan(name, start, end))
    return Phases(tuple(out), tuple(Milestone(s.name, s.label, steps[s.name]) for s in specs))


def first_crossing(rows: Sequence[dict[str, Any]], key: str, threshold: float) -> int | None:
    """First step at which `key` reaches `threshold` (used to check that a measure leads
    another)."""
    return first_step(sorted(rows, key=lambda r: r["step"]), key, threshold)


#: The measures whose movement the leads table reports (when the analysis has them).
MOVING = (
    "test_acc",
    "circuit_score",
    "restricted_loss",
    "excluded_loss",
    "circuit_edges",
    "circuit_neurons",
    "llc",
)


def half_change_step(rows: Sequence[dict[str, Any]], column: str) -> int | None:
    """When `column` moves: the first step after its extreme (the value farthest from its
    final one) at which it has covered half the way from that extreme to the final value; on
    a log scale for losses. E.g. the LLC's fall from its peak, a circuit's shrinking from its
    largest size, test accuracy's rise. None without two finite values or without change."""
    import math

    log = column.endswith("loss")
    points = []
    for row in rows:
        value = row.get(column)
        if isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 or not log):
            points.append((row["step"], math.log(value) if log else float(value)))
    if len(points) < 2:
        return None
    final = points[-1][1]
    extreme_at = max(range(len(points)), key=lambda i: abs(points[i][1] - final))
    extreme = points[extreme_at][1]
    if extreme == final:
        return None
    half = (extreme + final) / 2
    for step, value in points[extreme_at:]:
        if (value - half) * (extreme - half) <= 0:
            return step
    return None
