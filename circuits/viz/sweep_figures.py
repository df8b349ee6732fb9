"""Figures of a sweep (`interp.sweep.study.Sweep`): the phase diagram and event curves with fits."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from interp.sweep.table import OUTCOMES

OUTCOME_COLORS = {
    "comprehension": "#2ca02c",
    "grokking": "#1f77b4",
    "memorization": "#ff7f0e",
    "confusion": "#d62728",
}


def _shown(value: Any) -> str:
    """An axis value in a legend: an empty one (e.g. no init_from) reads 'none'."""
    return "none" if value is None or value != value or value == "" else str(value)


def _ordered(values) -> list[Any]:
    return sorted(set(values), key=lambda v: (isinstance(v, str), v))


def phase_diagram(table: pd.DataFrame, x: str, y: str) -> go.Figure:
    """The outcome class of each (x, y) cell: the most common one over its seeds (ties: the
    first in `OUTCOMES` order), with the counts in the cell's label."""
    if "outcome" not in table:
        raise ValueError("phase diagram: no run has metrics yet")
    xs, ys = _ordered(table[x]), _ordered(table[y])
    z, text = np.full((len(ys), len(xs)), np.nan), [["" for _ in xs] for _ in ys]
    for (xv, yv), cell in table.groupby([x, y]):
        counts = cell["outcome"].value_counts()
        best = max(OUTCOMES, key=lambda o: (counts.get(o, 0), -OUTCOMES.index(o)))
        i, j = ys.index(yv), xs.index(xv)
        z[i, j] = OUTCOMES.index(best)
        text[i][j] = "<br>".join(f"{o} {n}/{len(cell)}" for o, n in counts.items())
    n = len(OUTCOMES)
    scale = []
    for k, name in enumerate(OUTCOMES):
        scale += [[k / n, OUTCOME_COLORS[name]], [(k + 1) / n, OUTCOME_COLORS[name]]]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(v) for v in xs],
            y=[str(v) for v in ys],
            text=text,
            texttemplate="%{text}",
            hovertemplate=f"{x}=%{{x}}<br>{y}=%{{y}}<br>%{{text}}<extra></extra>",
            colorscale=scale,
            zmin=-0.5,
            zmax=n - 0.5,
            colorbar=dict(
                tickvals=list(range(n)), ticktext=list(OUTCOMES), title="outcome (majority)"
            ),
        )
    )
    fig.update_layout(
        title=f"Phase diagram: {y} against {x}",
        xaxis_title=x,
        yaxis_title=y,
        xaxis_type="category",
        yaxis_type="category",
        height=420 + 20 * len(ys),
    )
    return fig


def curve_figure(
    table: pd.DataFrame,
    curve: pd.DataFrame,
    axis: str,
    column: str,
    censored: str | None = None,
    fits: list = (),
    log: bool = True,
) -> go.Figure:
    """Each run's `column` (open triangles: runs flagged `censored`, drawn at their value, a
    lower bound), the mean over seeds with its interval per axis value (`curve`), and fitted
    power laws; log axes with `log` when every value is positive."""
    fig = go.Figure()
    cens = table[censored].astype(bool) if censored else pd.Series(False, table.index)
    fig.add_trace(
        go.Scatter(
            x=table.loc[~cens, axis],
            y=table.loc[~cens, column],
            mode="markers",
            name="runs",
            marker=dict(color="#888", size=6),
            text=table.loc[~cens, "run"],
        )
    )
    if cens.any():
        fig.add_trace(
            go.Scatter(
                x=table.loc[cens, axis],
                y=table.loc[cens, column],
                mode="markers",
                name="censored (not reached: last step)",
                marker=dict(symbol="triangle-up-open", color="#d62728", size=9),
                text=table.loc[cens, "run"],
            )
        )
    stats = ("n", "n_censored", "mean", "low", "high", "method")
    others = [c for c in curve.columns if c not in (axis, *stats)]
    groups = curve.groupby(others, dropna=False) if others else [((), curve)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = ", ".join(f"{k}={_shown(v)}" for k, v in zip(others, key))
        ok = group["mean"].notna()
        fig.add_trace(
            go.Scatter(
                x=group.loc[ok, axis],
                y=group.loc[ok, "mean"],
                mode="lines+markers",
                name=f"{label + ': ' if label else ''}mean over seeds, 95% CI",
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(group.loc[ok, "high"] - group.loc[ok, "mean"]).clip(lower=0),
                    arrayminus=(group.loc[ok, "mean"] - group.loc[ok, "low"]).clip(lower=0),
                ),
            )
        )
    for item in fits:
        f = item.fit
        xs = np.geomspace(float(table[axis][table[axis] > 0].min()), float(table[axis].max()), 50)
        a, b = f.params["a"], f.params["b"]
        lo, hi = f.interval["b"]
        where = " " + ", ".join(f"{k}={v}" for k, v in item.group.items()) if item.group else ""
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=a * xs**b,
                mode="lines",
                line=dict(dash="dash"),
                name=f"fit{where}: {a:.3g}·x^{b:.2f} (b in [{lo:.2f}, {hi:.2f}])",
            )
        )
    positive = log and (table[axis] > 0).all() and (table[column] > 0).all()
    fig.update_layout(
        title=f"{column} against {axis}",
        xaxis_title=axis,
        yaxis_title=column,
        xaxis_type="log" if positive else "linear",
        yaxis_type="log" if positive else "linear",
        height=480,
    )
    return fig


def scaling_figure(
    table: pd.DataFrame, x: str, fits: list, limited: str = "optimization_limited"
) -> go.Figure:
    """Excess loss L − H against `x` on log-log axes: runs (open: excluded by the `limited`
    column's rule), the fits (`interp.sweep.scaling.ScalingFit`; each drawn as its curve
    minus the table's irreducible term) and, where present, the count-based learner."""
    H = float(table["scaling_irreducible"].mean())
    excess = table["scaling_loss"] - H
    limited = table[limited].astype(bool)
    fig = go.Figure()
    for mask, name, symbol in ((~limited, "runs", "circle"), (limited, "excluded", "circle-open")):
        if mask.any():
            fig.add_trace(
                go.Scatter(
                    x=table.loc[mask, x],
                    y=excess[mask],
                    mode="markers",
                    name=f"{name} (model: paired excess over H)",
                    marker=dict(symbol=symbol, size=7, color="#444"),
                    text=table.loc[mask, "run"],
                )
            )
    xs = np.geomspace(float(table[x].min()), float(table[x].max()), 60)
    for fit, dash in zip(fits, ("dash", "dot")):
        how = "c = H" if fit.irreducible_fixed else f"c free = {fit.irreducible:.4f}"
        lo, hi = fit.alpha_interval
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=fit.predict(xs) - H,
                mode="lines",
                line=dict(dash=dash),
                name=f"power law ({how}): α = {fit.alpha:.3f} [{lo:.3f}, {hi:.3f}]",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=fit.predict_exponential(xs) - H,
                mode="lines",
                line=dict(dash=dash, color="#bbb"),
                name=f"exponential ({how}): MSE ratio exp/power {fit.mse_ratio:.1f}",
            )
        )
    for column, name in (
        ("count_excess_graph", "add-½ counts, knowing the graph"),
        ("count_excess_all", "add-½ counts over all nodes"),
    ):
        if column in table:
            mean = table.groupby(x)[column].mean()
            fig.add_trace(go.Scatter(x=mean.index, y=mean.values, mode="lines+markers", name=name))
    fig.update_layout(
        title=f"Excess loss over the irreducible term against {x}",
        xaxis_title=x,
        yaxis_title="excess loss (nats/token)",
        xaxis_type="log",
        yaxis_type="log",
        height=520,
    )
    return fig


def plot_scaling(
    sweep, x: str = "final_tokens_seen", fits=None, select: str | None = None, **group: Any
) -> go.Figure:
    """Excess loss over the irreducible term against `x` (log-log): every run (excluded ones
    open; with `select`, the selected runs), fitted power laws and exponentials, and the
    count-based learner's excess on the same tokens when the family records it."""
    if fits is None:
        fits = [sweep.scaling(x, fixed=fixed, select=select, **group) for fixed in (True, False)]
    runs = sweep.selected(x, select, **group) if select else sweep.where(sweep.done(), group)
    return scaling_figure(runs, x, fits, limited=sweep.limited_column(x))


def plot_phase_diagram(sweep, x: str, y: str) -> go.Figure:
    """The outcome class of every finished run of `sweep` over two axes."""
    return phase_diagram(sweep.done(), x, y)


def plot_events(
    sweep, axis: str, event: str = "generalized", fit: bool = True, fits: list | None = None
) -> go.Figure:
    """Each run's `event` step (censored ones drawn at their last step), the mean over
    seeds with its interval, and the power-law fits (`fits`, computed unless given)."""
    if fits is None:
        fits = sweep.fits(axis, event) if fit else []
    curve = sweep.event_curve(axis, event)
    return curve_figure(
        sweep.done(), curve, axis, f"{event}_step", f"{event}_censored", fits, log=True
    )


def plot_metric(sweep, axis: str, column: str = "final_test_acc") -> go.Figure:
    """A final metric against `axis`: every run, and the mean over seeds with its
    interval, one line per value of the other varied axes."""
    return curve_figure(sweep.done(), sweep.curve(axis, column), axis, column, log=False)
