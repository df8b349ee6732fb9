"""Direct logit attribution figures for any family whose checkpoints carry `dla` and
`dla_names` (`circuits.analyses.attribution`): per component at one checkpoint (a slider),
and over training."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from circuits.viz.figures import add_checkpoint_slider, checkpoints_with, finite


def plot_attribution(result, max_steps: int = 60) -> go.Figure:
    """Direct logit attribution per component at one checkpoint (bars), with a slider."""
    cps = checkpoints_with(result, "dla", max_steps)
    names = cps[0].dla_names or [f"component {i}" for i in range(cps[0].dla.numel())]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[0.0] * len(names),
            name="direct logit attribution",
            hovertemplate="%{x}<br>contribution %{y:.3f}<extra></extra>",
        )
    )

    def colors(values: list[float]) -> list[str]:
        return ["#2ca02c" if v >= 0 else "#d62728" for v in values]

    restyles, titles = [], []
    for c in cps:
        values = c.dla.tolist()
        restyles.append({"y": [values], "marker.color": [colors(values)]})
        total = c.row.get("dla/total")
        titles.append(
            f"Direct logit attribution to the correct answer, step {c.step}"
            + (f" (model's centered correct logit {total:.2f})" if finite(total) else "")
        )
    add_checkpoint_slider(fig, [c.step for c in cps], restyles, titles)
    lo = min(min(r["y"][0]) for r in restyles)
    hi = max(max(r["y"][0]) for r in restyles)
    pad = 0.05 * (hi - lo or 1.0)
    fig.update_layout(
        xaxis_title="component (embedding, head LlHh, bias, MLP)",
        yaxis_title="mean contribution to centered correct logit",
        yaxis_range=[min(lo, 0) - pad, hi + pad],
        height=460,
        showlegend=False,
    )
    return fig


def plot_attribution_over_training(result) -> go.Figure:
    cps = [c for c in result.checkpoints if c.dla is not None]
    values = torch.stack([c.dla for c in cps])
    fig = go.Figure()
    for i, name in enumerate(cps[0].dla_names or []):
        fig.add_trace(
            go.Scatter(
                x=[c.step for c in cps],
                y=values[:, i].tolist(),
                mode="lines",
                name=name,
                hovertemplate=f"{name}: %{{y:.3f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Direct logit attribution to the correct answer over training",
        xaxis_title="training step",
        yaxis_title="mean contribution to centered correct logit",
        hovermode="x unified",
        height=450,
    )
    return fig
