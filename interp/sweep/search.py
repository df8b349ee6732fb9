"""A neighbour search on a grid, per group, with the certificate of Kim et al. 2025 (ANCHORS §5):
a setting is accepted when none of its one-step grid neighbours is better on the objective.

A search spec is a sweep spec (`interp.sweep.spec`) plus a `[search]` table:

    base = "graph-walk"
    set = ["task.data=fixed", "task.corpus_walks=4000"]
    seeds = [0]                            # each point is run once per seed; its value is the mean
    [grid]                                 # the groups: one search per combination
    "model.d_model" = [16, 32]
    [search]
    objective = "final_val_loss"           # a sweep-table column of validation (or train) metrics
    minimize = true
    confirm_seeds = [1, 2]                 # optional: the accepted point again, for intervals
    max_points = 0                         # optional cap on points per group (0: none)
    [search.axes]                          # ordered values; neighbours are one index apart
    "train.lr" = [0.01, 0.03, 0.1]
    "train.weight_decay" = [0.01, 0.1, 1.0]
    [search.axes.epochs]                   # a tied axis: its fields move together
    values = [4, 8, 16]                    # its labels (run names, the table, the report)
    "train.steps" = [500, 1000, 2000]
    "train.warmup_steps" = [50, 100, 200]
    [search.start]                         # the starting point (default: each axis's middle)
    "train.lr" = 0.03
    epochs = 8

The walk (`plan`) is a greedy hill-climb: evaluate the current point and its neighbours
(±1 index on each axis), move to the best neighbour if it is strictly better, and repeat;
the point that beats all its neighbours is accepted, and their values are its certificate.
Since each move strictly improves the objective, the walk never revisits a point and ends.
It is a pure function of the finished runs' values, so a resumed search re-plans from the
start point and re-runs nothing that finished. `interp.sweep.search_run` runs the trials
through the sweep runner (every trial an ordinary run folder; local or Ray backend).

Optuna is not used: its samplers propose points (TPE, CMA-ES) or enumerate the grid
(GridSampler); none evaluates a point's neighbours to certify it, and its study storage would
be a second record of the trials beside sweep.json, while here the run folders are the state.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from interp.config import RunConfig
from interp.config_base import ConfigError
from interp.sweep.spec import (
    DEFAULT_SEED_FIELDS,
    PlannedRun,
    SpecError,
    absolute_paths,
    assignment,
    flatten_table,
    parse_spec,
    run_name,
)

SEARCH_KEYS = {"objective", "minimize", "axes", "start", "confirm_seeds", "max_points"}
#: Objectives must read a validation (or training) column, never a test one.
OBJECTIVE_PREFIXES = ("final_val_", "final_train_")

Point = tuple[int, ...]


@dataclass(frozen=True)
class SearchAxis:
    """One ordered axis: its labels and, per config field it sets, the value at each label."""

    name: str
    values: tuple[Any, ...]
    fields: dict[str, tuple[Any, ...]]

    def assignments(self, index: int) -> dict[str, Any]:
        return {key: values[index] for key, values in self.fields.items()}


@dataclass(frozen=True)
class Group:
    """One search: the spec's grid values (`axes`) and its resolved base config."""

    axes: dict[str, Any]
    config: RunConfig = field(repr=False)


@dataclass(frozen=True)
class SearchSpec:
    groups: tuple[Group, ...]
    axes: tuple[SearchAxis, ...]
    start: Point
    objective: str
    minimize: bool
    seeds: tuple[int | None, ...]
    seed_fields: tuple[str, ...]
    confirm_seeds: tuple[int, ...]
    max_points: int
    names: dict[str, str]
    raw: dict[str, Any]

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(a.values) for a in self.axes)

    def labels(self, point: Point) -> dict[str, Any]:
        return {axis.name: axis.values[i] for axis, i in zip(self.axes, point)}

    def trial(self, group: Group, point: Point, seed: int | None) -> PlannedRun:
        """The run of `group` at `point` with `seed` (its name: group axes, labels, seed)."""
        sets: dict[str, Any] = {}
        for axis, index in zip(self.axes, point):
            sets.update(axis.assignments(index))
        overrides = [assignment(k, v) for k, v in sets.items()]
        named = {**group.axes, **self.labels(point)}
        if seed is not None:
            named["seed"] = seed
            overrides += [assignment(f, seed) for f in self.seed_fields]
        try:
            config = absolute_paths(group.config.with_overrides(overrides))
        except ConfigError as exc:
            raise SpecError(f"search point {named}: {exc}") from None
        axes = {**named, **{k: v for k, v in sets.items() if k not in named}}
        return PlannedRun(run_name(named, config, self.names), axes, config)


def _axes(table: Any) -> tuple[SearchAxis, ...]:
    if not isinstance(table, dict) or not table:
        raise SpecError("search.axes: expected a table of field = [ordered values]")
    axes = []
    for name, value in table.items():
        if isinstance(value, list):
            axes.append(SearchAxis(name, tuple(value), {name: tuple(value)}))
            continue
        if not isinstance(value, dict) or "values" not in value:
            raise SpecError(
                f"search.axes.{name}: a tied axis needs `values` (its labels); write a single "
                f'field as a quoted key ("train.lr" = [...])'
            )
        labels = value["values"]
        fields = flatten_table(
            {k: v for k, v in value.items() if k != "values"}, f"search.axes.{name}"
        )
        if not fields:
            raise SpecError(f"search.axes.{name}: no fields move with it")
        for key, values in [("values", labels), *fields.items()]:
            if not isinstance(values, list) or len(values) != len(labels):
                raise SpecError(
                    f"search.axes.{name}.{key}: expected a list of {len(labels)} values "
                    "(one per label)"
                )
        axes.append(SearchAxis(name, tuple(labels), {k: tuple(v) for k, v in fields.items()}))
    for axis in axes:
        if not axis.values:
            raise SpecError(f"search.axes.{axis.name}: the axis is empty")
        if len(set(map(repr, axis.values))) < len(axis.values):
            raise SpecError(f"search.axes.{axis.name}: repeated values {list(axis.values)}")
    return tuple(axes)


def _start(table: Any, axes: tuple[SearchAxis, ...]) -> Point:
    table = table or {}
    if not isinstance(table, dict):
        raise SpecError("search.start: expected a table of axis = value")
    names = [a.name for a in axes]
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise SpecError(f"search.start: {unknown} are not search axes: {names}")
    point = []
    for axis in axes:
        if axis.name not in table:
            point.append((len(axis.values) - 1) // 2)  # the middle (the lower one of two)
            continue
        value = table[axis.name]
        if value not in axis.values:
            raise SpecError(f"search.start.{axis.name} = {value!r}: not one of {list(axis.values)}")
        point.append(axis.values.index(value))
    return tuple(point)


def parse_search(
    raw: dict[str, Any],
    root: Any = ".",
    groups: tuple[Group, ...] | None = None,
    order: list[str] | None = None,
) -> SearchSpec:
    """Plan and check a search spec (module docstring). `groups` (from a stored sweep.json)
    replace the groups the spec's grid plans, so a resumed search needs no base file; `order`
    restores the axes' order (a stored spec's tables come back with sorted keys)."""
    if "search" not in raw:
        raise SpecError("spec: no [search] table (interp sweep run runs a plain sweep)")
    search = raw["search"]
    if not isinstance(search, dict):
        raise SpecError("search: expected a table")
    unknown = sorted(set(search) - SEARCH_KEYS)
    if unknown:
        raise SpecError(f"search: unknown key(s) {unknown}; known: {sorted(SEARCH_KEYS)}")
    objective = search.get("objective", "final_val_loss")
    if not isinstance(objective, str) or not objective.startswith(OBJECTIVE_PREFIXES):
        raise SpecError(
            f"search.objective = {objective!r}: must be a validation (or training) column of the "
            f"sweep table, starting with {' or '.join(OBJECTIVE_PREFIXES)}; never a test metric"
        )
    minimize = search.get("minimize", True)
    if not isinstance(minimize, bool):
        raise SpecError(f"search.minimize: expected true or false, got {minimize!r}")
    confirm = search.get("confirm_seeds", [])
    max_points = search.get("max_points", 0)
    if not isinstance(confirm, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in confirm
    ):
        raise SpecError(f"search.confirm_seeds: expected a list of integers, got {confirm!r}")
    if not isinstance(max_points, int) or max_points < 0:
        raise SpecError(f"search.max_points: expected an integer >= 0, got {max_points!r}")
    axes = _axes(search.get("axes"))
    if order is not None:
        axes = tuple(sorted(axes, key=lambda a: order.index(a.name)))
    start = _start(search.get("start"), axes)

    plain = {k: v for k, v in raw.items() if k != "search"}
    seeds = tuple(plain.pop("seeds", [None]) or [None])
    if groups is None:
        planned = parse_spec(plain, root).runs  # one per group, without seeds
        groups = tuple(Group(dict(run.axes), run.config) for run in planned)
    seed_fields = tuple(raw.get("seed_fields", DEFAULT_SEED_FIELDS))
    if confirm and seeds == (None,):
        raise SpecError("search.confirm_seeds: needs `seeds` (the seeds the search itself runs)")
    overlap = {f for a in axes for f in a.fields} & (set(groups[0].axes) | set(seed_fields))
    if overlap:
        raise SpecError(f"search.axes: {sorted(overlap)} are also grid axes or seed fields")
    names = {str(k): str(v) for k, v in flatten_table(raw.get("names", {}), "names").items()}
    spec = SearchSpec(
        groups, axes, start, objective, minimize, seeds, seed_fields, tuple(confirm),
        max_points, names, raw,
    )  # fmt: skip
    base = groups[0]
    for axis in axes:  # every value on its own first, so that an error names it
        for index, label in enumerate(axis.values):
            for key, value in axis.assignments(index).items():
                try:
                    base.config.with_overrides([assignment(key, value)])
                except ConfigError as exc:
                    raise SpecError(f"search.axes.{axis.name} = {label!r}: {exc}") from None
    spec.trial(base, start, seeds[0])
    return spec


@dataclass(frozen=True)
class Plan:
    """Where one group's walk stands: `status` "running" (the `needed` points are not all
    evaluated), "accepted" (`current` beats every neighbour: `certificate`) or "stopped"
    (`max_points` reached)."""

    status: str
    current: Point
    needed: tuple[Point, ...] = ()
    path: tuple[Point, ...] = ()
    certificate: tuple[tuple[Point, float], ...] = ()
    evaluated: tuple[Point, ...] = ()


def neighbours(point: Point, sizes: tuple[int, ...]) -> list[Point]:
    """The one-step grid neighbours of `point`: each axis one index down, then one up."""
    out = []
    for axis, size in enumerate(sizes):
        for step in (-1, 1):
            index = point[axis] + step
            if 0 <= index < size:
                out.append(point[:axis] + (index,) + point[axis + 1 :])
    return out


def plan(
    value: Callable[[Point], float | None],
    start: Point,
    sizes: tuple[int, ...],
    minimize: bool = True,
    max_points: int = 0,
) -> Plan:
    """The greedy neighbour walk from `start` over what is known (`value(point)`: the
    objective, None when not evaluated yet; a failed point is +inf when minimizing). Ties
    keep the current point; among equal neighbours the first in `neighbours` order wins."""
    sign = 1.0 if minimize else -1.0

    def score(point: Point) -> float:
        v = value(point)
        return math.inf if v is None or math.isnan(v) else sign * v

    current, path = start, [start]
    evaluated: dict[Point, None] = {}
    while True:
        around = [current, *neighbours(current, sizes)]
        missing = tuple(p for p in around if value(p) is None)
        evaluated.update((p, None) for p in around if p not in missing)
        if missing:
            if max_points and len(evaluated) >= max_points:
                return Plan("stopped", current, (), tuple(path), (), tuple(evaluated))
            return Plan("running", current, missing, tuple(path), (), tuple(evaluated))
        best = min(around[1:], key=score, default=current)
        if not score(best) < score(current):
            certificate = tuple((p, float(value(p))) for p in around[1:])  # type: ignore[arg-type]
            return Plan("accepted", current, (), tuple(path), certificate, tuple(evaluated))
        current = best
        path.append(current)


def grid_points(sizes: tuple[int, ...]) -> list[Point]:
    """Every point of the grid (for tests and for comparing a search with the full grid)."""
    return list(itertools.product(*(range(n) for n in sizes)))


def with_groups(spec: SearchSpec, groups: tuple[Group, ...]) -> SearchSpec:
    return replace(spec, groups=groups)
