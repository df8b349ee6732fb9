"""A finished (or stopped) sweep in a notebook: `interp.load_sweep(path)`.

    sweep = interp.load_sweep("sweeps/wd")
    sweep.table                                  # pandas: one row per run (interp.sweep.table)
    sweep.event_curve("train.weight_decay")      # per axis value: mean step with its interval
    sweep.fit("train.weight_decay")              # power law t = a·x^b over the runs, with CIs

    from circuits.viz import sweep_figures as S   # its figures: plot_*(sweep, ...)
    S.plot_phase_diagram(sweep, "task.train_frac", "train.weight_decay")
    S.plot_events(sweep, "train.weight_decay")   # runs, means with intervals, the fit

`interp sweep analyze SWEEP_DIR` writes the same table as `sweep.csv` and the same figures
as `sweep_report.html` (`circuits.viz.sweep_report.write_sweep_report`). Intervals over seeds:
`interp.sweep.fits.seed_interval` (a bootstrap with
≥ 5 seeds, a t-interval with fewer). Censored runs (the event not reached in the budget)
are drawn and counted but left out of means and fits, which is only honest when few are:
the curve's `n_censored` says how many, and a fit lists how many it left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from interp.sweep.fits import Fit, fit_power_law, seed_interval
from interp.sweep.runner import RUNS_DIR, read_manifest
from interp.sweep.table import run_row

TABLE_FILE = "sweep.csv"
REPORT_FILE = "sweep_report.html"


@dataclass
class EventFit:
    axis: str
    event: str
    fit: Fit
    excluded_censored: int
    group: dict[str, Any]


class Sweep:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        #: The spec's axes in order (`seed` among them when the spec lists seeds).
        self.axes: list[str] = list(self.manifest.get("axes", []))
        rows = [run_row(e, self.path / RUNS_DIR / e["name"]) for e in self.manifest["runs"]]
        self.table = pd.DataFrame(rows)

    def __repr__(self) -> str:
        counts = self.table["status"].value_counts().to_dict()
        return f"Sweep({str(self.path)!r}, {len(self.table)} runs, {counts}, axes={self.axes})"

    @property
    def varied(self) -> list[str]:
        """The axes other than `seed`."""
        return [a for a in self.axes if a != "seed"]

    def done(self) -> pd.DataFrame:
        t = self.table
        return t[t["status"] == "done"] if "status" in t else t

    def curve(
        self,
        axis: str,
        column: str,
        by: list[str] | None = None,
        censored: str | None = None,
    ) -> pd.DataFrame:
        """Per value of `axis` (and of the `by` axes; default: every other varied axis), the
        mean of `column` over seeds with its interval; runs flagged in the `censored` column
        are counted (`n_censored`) but left out of the mean."""
        by = [a for a in self.varied if a != axis] if by is None else by
        done = self.done()
        rows = []
        for key, group in done.groupby([*by, axis], dropna=False, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            cut = group[censored].astype(bool) if censored else pd.Series(False, group.index)
            observed = group.loc[~cut, column].astype(float).dropna()
            row = dict(zip([*by, axis], key))
            row.update(n=len(group), n_censored=int(cut.sum()))
            if len(observed):
                interval = seed_interval(observed.to_numpy())
                low, high = interval.low, interval.high
                if column.endswith("_acc"):  # an accuracy's interval stays within [0, 1]
                    low, high = max(low, 0.0), min(high, 1.0)
                row.update(mean=interval.mean, low=low, high=high, method=interval.method)
            else:
                row.update(mean=math.nan, low=math.nan, high=math.nan, method="all censored")
            rows.append(row)
        return pd.DataFrame(rows)

    def event_curve(
        self, axis: str, event: str = "generalized", by: list[str] | None = None
    ) -> pd.DataFrame:
        """`curve` of the step of `event` over the runs that reached it."""
        if f"{event}_step" not in self.table:
            raise KeyError(f"event {event!r}: no column {event}_step; events: {self.events}")
        return self.curve(axis, f"{event}_step", by, censored=f"{event}_censored")

    @property
    def events(self) -> list[str]:
        """The events in the table (each has `<event>_step` and `<event>_censored`)."""
        return [c.removesuffix("_censored") for c in self.table.columns if c.endswith("_censored")]

    def fit(self, axis: str, event: str = "generalized", **group: Any) -> EventFit:
        """A power law step = a·axis^b over the runs (every seed a point) that reached `event`,
        restricted to the runs whose other axes equal `group` (e.g. task_frac=0.4)."""
        done = self.where(self.done(), group)
        censored = done[f"{event}_censored"].astype(bool)
        data = done[~censored & (done[axis] > 0)]
        fit = fit_power_law(data[axis].astype(float), data[f"{event}_step"].astype(float))
        return EventFit(axis, event, fit, int(censored.sum()), dict(group))

    def fits(self, axis: str, event: str = "generalized") -> list[EventFit]:
        """One fit per combination of the other varied axes, where at least 3 distinct positive
        axis values were observed (with 2 a line fits exactly and its interval means nothing)."""
        others = [a for a in self.varied if a != axis]
        done = self.done()
        fits = []
        groups = done.groupby(others, dropna=False) if others else [((), done)]
        for key, group in groups:
            key = key if isinstance(key, tuple) else (key,)
            observed = group[~group[f"{event}_censored"].astype(bool) & (group[axis] > 0)]
            if observed[axis].nunique() < 3:
                continue
            try:
                fits.append(self.fit(axis, event, **dict(zip(others, key))))
            except (ValueError, RuntimeError):
                continue
        return fits

    #: x columns of a scaling study: tokens trained on (L(D)) and parameters (L(N)).
    SCALING_X = ("final_tokens_seen", "n_params")
    #: The exclusion rule (`interp.sweep.scaling`) per x: L(D) with one epoch excludes runs that
    #: have not left the initial plateau; L(N) at a fixed D excludes runs whose loss still
    #: fell over the last 20 % of their steps (limited by the step budget, not by size).
    LIMITED_BY = {"final_tokens_seen": "optimization_limited", "n_params": "still_improving"}

    def limited_column(self, x: str) -> str:
        """The column flagging the runs a scaling fit against `x` excludes (`LIMITED_BY`)."""
        column = self.LIMITED_BY.get(x, "optimization_limited")
        return column if column in self.done() else "optimization_limited"

    def scaling_groups(self, x: str) -> list[dict[str, Any]]:
        """The groups a scaling fit against `x` is made in: one per combination of the varied
        axes that vary among runs of the same `x` (e.g. the learning rate of an L(N) grid);
        axes that only move `x` (steps, warmup with steps) do not split it."""
        done = self.done()
        if "scaling_loss" not in done or x not in done or done[x].nunique() < 3:
            return []
        independent = [
            a for a in self.varied if a not in self.TUNING_AXES and _varies_at_one_x(done, x, a)
        ]
        if not independent:
            return [{}]
        keys = done[independent].drop_duplicates().to_dict("records")
        return [k for k in keys if self.where(done, k)[x].nunique() >= 3]

    @staticmethod
    def where(table: pd.DataFrame, group: dict[str, Any]) -> pd.DataFrame:
        for name, value in group.items():
            table = table[table[name] == value]
        return table

    #: Tuning axes a scaling study selects over (the best value per x), not splits by.
    TUNING_AXES = ("train.lr",)

    @property
    def selection_column(self) -> str:
        """What `selected` reads by default: the validation loss when the runs have a
        validation split (a fixed walk corpus: its `train` split is the corpus itself), else
        the `train` split's loss (with fresh walks, held-out walks never trained on)."""
        return "final_val_loss" if "final_val_loss" in self.table else "final_train_loss"

    def selected(self, x: str, select: str, on: str | None = None, **group: Any) -> pd.DataFrame:
        """The runs of `group` whose `select` value (e.g. the learning rate) has, at their `x`,
        the lowest mean over seeds of `on` (default `selection_column`). `on` must not be a
        test metric."""
        on = on or self.selection_column
        if on.startswith("final_test"):
            raise ValueError(f"selecting {select} on {on} would select on the test split")
        done = self.where(self.done(), group)
        means = done.groupby([x, select])[on].mean().reset_index()
        best = means.loc[means.groupby(x)[on].idxmin(), [x, select]]
        return done.merge(best, on=[x, select])

    def scaling(
        self,
        x: str = "final_tokens_seen",
        *,
        fixed: bool = True,
        select: str | None = None,
        on: str | None = None,
        **group: Any,
    ):
        """`interp.sweep.scaling.fit_scaling` of the family's `scaling_loss` against `x` over the
        runs of `group` (with `select`, only the best value of that axis per x: `selected`),
        every seed a curve (the bootstrap resamples seeds); the irreducible term fixed at the
        family's `scaling_irreducible` (the walk's H) or free; runs flagged by the rule for
        `x` (`limited_column`) excluded and listed."""
        from interp.sweep.scaling import fit_scaling

        done = self.selected(x, select, on, **group) if select else self.where(self.done(), group)
        points = pd.DataFrame(
            {
                "x": done[x].astype(float),
                "loss": done["scaling_loss"].astype(float),
                "seed": done["seed"] if "seed" in done else 0,
                "limited": done[self.limited_column(x)].astype(bool),
            }
        )
        irreducible = float(done["scaling_irreducible"].mean()) if fixed else None
        return fit_scaling(points, irreducible=irreducible)

    def tuning_axis(self, x: str) -> str | None:
        """The tuning axis (`TUNING_AXES`) that varies among runs of the same `x`, if any."""
        done = self.done()
        return next(
            (a for a in self.TUNING_AXES if a in self.varied and _varies_at_one_x(done, x, a)),
            None,
        )

    def write_table(self, path: str | Path | None = None) -> Path:
        from interp.runs import atomic_write_bytes

        path = Path(path) if path else self.path / TABLE_FILE
        atomic_write_bytes(path, self.table.to_csv(index=False).encode())
        return path


def _varies_at_one_x(table: pd.DataFrame, x: str, axis: str) -> bool:
    """Whether `axis` takes several values among runs with the same `x` (so it is not merely
    a function of x, as the warmup of an L(D) zip is of the steps)."""
    return axis in table and bool(table.groupby(x)[axis].nunique().max() > 1)


def load_sweep(path: str | Path) -> Sweep:
    """The sweep in `path` (a folder `interp sweep run` wrote), as a table and figures."""
    return Sweep(path)
