"""Plotly figures of a `RunAnalysis`, most with a checkpoint slider.

Each `plot_*` takes analysis results and returns a `plotly.graph_objects.Figure`; nothing
is shown. A checkpoint slider is a plotly slider whose steps restyle the traces with the
data of one checkpoint (`method="update"`), so a figure is a single self-contained object
that works in Jupyter, in a saved HTML file and in the report. Sliders show at most
`max_steps` checkpoints (evenly chosen, always keeping the first, the last and the phase
boundaries) so long runs stay light.

The modular family's views (Fourier spectrum, neuron clusters, attribution, attention over
training) are in `circuits.families.modular.figures`, the entity families' in
`circuits.families.entity.figures`; this module holds the timeline and what figures share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from circuits.pipeline.figure_steps import pick_steps

#: Shading of the phase spans in order (the last, stable span is not shaded).
PHASE_COLORS = ("#fde0dd", "#deebf7", "#e5f5e0", "#fff2cc")
KEY_COLOR, OTHER_COLOR, EMBED_COLOR, UNEMBED_COLOR = "#08519c", "#9ecae1", "#1f77b4", "#ff7f0e"


def phase_steps(result) -> list[int]:
    """The steps of the run's phase milestones (kept by checkpoint sliders)."""
    phases = getattr(result, "phases", None)
    return phases.boundaries() if phases is not None else []


def add_checkpoint_slider(
    fig: go.Figure,
    steps: list[int],
    restyles: list[dict[str, Any]],
    titles: list[str] | None = None,
    active: int | None = None,
    traces: list[int] | None = None,
) -> go.Figure:
    """A slider over checkpoints: step i applies `restyles[i]` (trace attributes, each a list
    with one value per trace in `traces`) and sets the title to `titles[i]`."""
    active = len(steps) - 1 if active is None else active
    slider_steps = []
    for i, step in enumerate(steps):
        layout = {"title.text": titles[i]} if titles else {}
        args: list[Any] = [restyles[i], layout]
        if traces is not None:
            args.append(traces)
        slider_steps.append({"method": "update", "label": str(step), "args": args})
    fig.update_layout(
        sliders=[
            {
                "active": active,
                # The current step is printed at the right end, clear of the x-axis title above the
                # slider.
                "currentvalue": {
                    "prefix": "checkpoint step: ",
                    "font": {"size": 14, "color": "#222"},
                    "xanchor": "right",
                },
                "pad": {"t": 90},
                "steps": slider_steps,
                # Tick labels of long sliders overlap; the current value is printed above instead.
                "font": {
                    "size": 10 if len(steps) <= 20 else 1,
                    "color": "#444" if len(steps) <= 20 else "rgba(0,0,0,0)",
                },
                "name": "checkpoint",
            }
        ]
    )
    # Start on the active step.
    for key, values in restyles[active].items():
        for j, value in enumerate(values):
            _set(fig.data[traces[j] if traces is not None else j], key, value)
    if titles:
        fig.update_layout(title_text=titles[active])
    return fig


def _set(trace: Any, key: str, value: Any) -> None:
    trace.update(_nested(key, value))


def _nested(key: str, value: Any) -> dict[str, Any]:
    head, _, rest = key.partition(".")
    return {head: _nested(rest, value) if rest else value}


def freq_label(k: int, keys: Sequence[int] = ()) -> str:
    return f"k={k}" + (" (key)" if k in keys else "")


# --------------------------------------------------------------------------------------
# Transition timeline
# --------------------------------------------------------------------------------------


#: The timeline's panels: (title, y-axis title, log scale, relative height).
TIMELINE_PANELS = {
    1: ("Loss (float64 cross-entropy, log scale)", "loss", True, 0.34),
    2: ("Accuracy and circuit score", "fraction", False, 0.26),
    3: ("Fourier sparsity (Gini) and clustered neurons", "Gini / fraction", False, 0.2),
    4: ("Sum of squared weights", "Σ w²", False, 0.2),
    5: ("Local learning coefficient (SGLD; bars: chain spread)", "LLC", False, 0.2),
}


def plot_timeline(result) -> go.Figure:
    """Losses, accuracies and circuit score, Fourier sparsity, weight norm; phases marked.

    Panels: (1) train / test loss and the restricted (test) / excluded (train) loss, log
    scale; (2) train / test accuracy and `circuit_score`; (3) Gini coefficients of the
    Fourier norms of W_E and W_L and the fraction of neurons in a frequency cluster;
    (4) the sum of squared weights. Panels without data are left out; other tasks' split
    accuracies and losses (train_inferred, test_id, …) join panels 1 and 2. Phase
    spans (the task family's, `result.phases`) are shaded, their milestones drawn as dashed lines.
    """
    rows = result.rows
    steps = [r["step"] for r in rows]
    has = lambda key: any(key in r and finite(r[key]) for r in rows)  # noqa: E731
    series = [
        (1, "train_loss", "train loss", "#1f77b4", "solid"),
        (1, "test_loss", "test loss", "#d62728", "solid"),
        (1, "restricted_loss", "restricted loss (key freqs only, test)", "#2ca02c", "dash"),
        (1, "excluded_loss", "excluded loss (key freqs removed, train)", "#9467bd", "dash"),
        (2, "train_acc", "train accuracy", "#1f77b4", "solid"),
        (2, "test_acc", "test accuracy", "#d62728", "solid"),
        (2, "circuit_score", "circuit score (train only)", "#000000", "solid"),
        (3, "gini_embed", "Gini of W_E Fourier norms", "#17becf", "solid"),
        (3, "gini_unembed", "Gini of W_L Fourier norms", "#bcbd22", "solid"),
        (3, "frac_neurons_clustered", "fraction of neurons clustered", "#8c564b", "dot"),
        (4, "sum_sq_weights", "sum of squared weights", "#7f7f7f", "solid"),
        (5, "llc", "local learning coefficient", "#e377c2", "solid"),
    ]
    # Other tasks name their splits differently (train_inferred, test_id, test_ood, ...).
    known = {key for _, key, *_ in series}
    for key in sorted({k for r in rows for k in r} - known):
        if key.endswith("_acc") and has(key):
            series.append(
                (2, key, key.removesuffix("_acc").replace("_", " ") + " accuracy", None, "solid")
            )
        elif key.endswith("_loss") and has(key):
            series.append(
                (1, key, key.removesuffix("_loss").replace("_", " ") + " loss", None, "solid")
            )
    series = [s for s in series if has(s[1])]
    panels = sorted({s[0] for s in series}) or [2]
    row_of = {panel: i + 1 for i, panel in enumerate(panels)}
    weights = [TIMELINE_PANELS[p][3] for p in panels]
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.05,
        row_heights=[w / sum(weights) for w in weights],
        subplot_titles=[TIMELINE_PANELS[p][0] for p in panels],
    )
    for panel, key, name, color, dash in series:
        ys = [r.get(key, math.nan) for r in rows]
        ys = [(max(y, 1e-12) if panel == 1 else y) if finite(y) else None for y in ys]
        extra: dict[str, Any] = {"mode": "lines"}
        if key == "llc":  # estimated at a subset of the checkpoints: join them, with spreads
            spread = [r.get("llc_std") if finite(r.get("llc_std", math.nan)) else 0 for r in rows]
            extra = dict(connectgaps=True, mode="lines+markers", error_y=dict(array=spread))
        if panel == 2 and hasattr(result, "interval"):
            _add_interval_band(fig, result, key, name, steps, ys, row_of[panel])
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=ys,
                name=name,
                legendgroup=str(panel),
                line={"color": color, "dash": dash, "width": 3 if key == "circuit_score" else 2},
                hovertemplate=f"{name}: %{{y:.4g}}<extra></extra>",
                **extra,
            ),
            row=row_of[panel],
            col=1,
        )
    add_phases(fig, result, n_rows=len(panels))
    _add_collapses(fig, result, n_rows=len(panels))
    for panel, row in row_of.items():
        _, y_title, log, _ = TIMELINE_PANELS[panel]
        fig.update_yaxes(title_text=y_title, type="log" if log else "linear", row=row, col=1)
        if panel in (2, 3):
            fig.update_yaxes(range=[-0.02, 1.02], row=row, col=1)
    fig.update_xaxes(title_text="training step", row=len(panels), col=1)
    keys = getattr(result, "key_frequencies", [])
    fourier = keys or 3 in panels  # an analysis with Fourier columns
    title = "Transition timeline" + (
        f" (key frequencies {', '.join(f'k={k}' for k in keys) or 'none found'})" if fourier else ""
    )
    fig.update_layout(
        title=title,
        height=250 + 700 * sum(weights),
        hovermode="x unified",
        legend={"tracegroupgap": 120},
    )
    return fig


def finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _add_interval_band(
    fig: go.Figure, result, key: str, name: str, steps: list, ys: list, row: int
) -> None:
    """A shaded 95 % Wilson band under an accuracy measured on a small split (< 1,000 examples)."""
    bounds = [result.interval(key, y) if y is not None else None for y in ys]
    if not any(bounds):
        return
    n = result.split_sizes[key]
    low = [b[0] if b else None for b in bounds]
    high = [b[1] if b else None for b in bounds]
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=high,
            mode="lines",
            line={"width": 0},
            showlegend=False,
            name=f"{name}: 95 % interval, upper",
            legendgroup=f"band {key}",
            hovertemplate=f"{name} 95 % interval, n={n}: ≤ %{{y:.3f}}<extra></extra>",
        ),
        row=row,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=steps,
            y=low,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor="rgba(120,120,120,0.18)",
            name=f"{name}: 95 % interval (n={n})",
            legendgroup=f"band {key}",
            hovertemplate=f"{name} 95 % interval, n={n}: ≥ %{{y:.3f}}<extra></extra>",
        ),
        row=row,
        col=1,
    )


def _add_collapses(fig: go.Figure, result, n_rows: int) -> None:
    """A red dotted line at each collapse event (the step the task's rule fired)."""
    for event in getattr(result, "collapses", []):
        for r in range(1, n_rows + 1):
            fig.add_vline(
                x=event.step, line_dash="dot", line_color="#d62728", line_width=2, row=r, col=1
            )
        fig.add_annotation(
            x=event.step,
            y=0.9,
            yref="y domain",
            text=f"collapse<br>step {event.step}",
            showarrow=False,
            xanchor="left",
            font={"size": 11, "color": "#d62728"},
            row=1,
            col=1,
        )


def add_phases(fig: go.Figure, result, n_rows: int) -> None:
    phases = getattr(result, "phases", None)
    if phases is None or not result.steps:
        return
    last = result.steps[-1]
    for span, color in zip([s for s in phases.spans if s.name != "stable"], PHASE_COLORS):
        if span.start is None:
            continue
        end = span.end if span.end is not None else last
        for r in range(1, n_rows + 1):
            fig.add_vrect(
                x0=span.start,
                x1=end,
                fillcolor=color,
                opacity=0.6,
                line_width=0,
                layer="below",
                row=r,
                col=1,
            )
        fig.add_annotation(
            x=(span.start + end) / 2,
            y=1.0,
            yref="y domain",
            text=span.name.replace("_", " "),
            showarrow=False,
            font={"size": 11, "color": "#333"},
            row=1,
            col=1,
        )
    for milestone in phases.milestones:
        label, step = milestone.label, milestone.step
        if step is None:
            continue
        for r in range(1, n_rows + 1):
            fig.add_vline(x=step, line_dash="dash", line_color="#555", line_width=1, row=r, col=1)
        last_axis = "y" if n_rows == 1 else f"y{n_rows}"
        fig.add_annotation(
            x=step,
            y=0.0,
            yref=f"{last_axis} domain",
            text=f"{label}<br>step {step}",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"size": 10, "color": "#555"},
        )


# --------------------------------------------------------------------------------------
# Layer × position heatmaps (logit lens of the entity tasks)
# --------------------------------------------------------------------------------------


def plot_layer_position(
    steps: Sequence[int],
    values: torch.Tensor,
    position_names: Sequence[str],
    title: str,
    value_name: str,
    layer_names: Sequence[str] | None = None,
    zmin: float | None = 0.0,
    zmax: float | None = 1.0,
    x_title: str = "position",
) -> go.Figure:
    """A heatmap of values[step, layer, pos] (layer × position) with a checkpoint slider."""
    values = values.double()
    n_layers = values.shape[1]
    layer_names = list(
        layer_names or ["embed"] + [f"after L{layer}" for layer in range(n_layers - 1)]
    )
    fig = go.Figure(
        go.Heatmap(
            z=values[-1].tolist(),
            x=list(position_names),
            y=layer_names,
            colorscale="Blues",
            zmin=zmin,
            zmax=zmax,
            colorbar={"title": {"text": value_name}},
            hovertemplate=f"%{{y}}, position %{{x}}<br>{value_name} %{{z:.3f}}<extra></extra>",
        )
    )
    restyles = [{"z": [values[i].tolist()]} for i in range(len(steps))]
    add_checkpoint_slider(fig, list(steps), restyles, [f"{title}, step {s}" for s in steps])
    fig.update_layout(xaxis_title=x_title, yaxis_title="layer (residual stream)", height=450)
    return fig


def checkpoints_with(result, attribute: str, max_steps: int) -> list:
    cps = [c for c in result.checkpoints if getattr(c, attribute, None) is not None]
    if not cps:
        raise ValueError(
            f"the analysis has no {attribute!r}; run it with the part that computes it"
        )
    keep = set(pick_steps([c.step for c in cps], max_steps, phase_steps(result)))
    return [c for c in cps if c.step in keep]
