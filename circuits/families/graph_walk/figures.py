"""Figures of the random-walk family's analysis (`circuits.families.graph_walk.analysis`)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def plot_node_kl(result) -> go.Figure | None:
    """KL(P_i ‖ q̄_i) per node against its visits, at the first, a middle and the last analyzed
    checkpoint: which nodes' transitions the model has learned, and when."""
    cps = [c for c in result.checkpoints if c.kl_per_node is not None]
    if not cps:
        return None
    fig = go.Figure()
    chosen = sorted({0, len(cps) // 2, len(cps) - 1})
    for symbol, i in zip(("circle-open", "diamond-open", "circle"), chosen):
        cp = cps[i]
        ok = np.isfinite(cp.kl_per_node)
        degree = cp.degree[ok] if cp.degree is not None else None
        fig.add_trace(
            go.Scatter(
                x=cp.visits[ok],
                y=cp.kl_per_node[ok],
                mode="markers",
                name=f"step {cp.step}",
                marker=dict(
                    symbol=symbol,
                    size=8,
                    color=degree,
                    colorscale="Viridis",
                    showscale=i == chosen[-1] and degree is not None,
                    colorbar=dict(title="degree"),
                ),
                text=_node_labels(np.flatnonzero(ok), degree),
            )
        )
    fig.update_layout(
        title="Learned transitions: KL(P_i ‖ q̄_i) per node against its visits (colour: degree)",
        xaxis_title="visits of the node in the test walks (∝ π_i)",
        yaxis_title="KL per node (nats)",
        yaxis_type="log",
        height=460,
    )
    return fig


def plot_position_attention(result) -> go.Figure | None:
    """Per head, the mean attention to the query's own position and to the one before,
    across checkpoints."""
    cps = [c for c in result.checkpoints if c.attention_self is not None]
    if not cps:
        return None
    fig = go.Figure()
    n_layers, n_heads = cps[0].attention_self.shape
    steps = [c.step for c in cps]
    for layer in range(n_layers):
        for head in range(n_heads):
            for name, attr, dash in (
                ("self", "attention_self", None),
                ("t-1", "attention_previous", "dot"),
            ):
                fig.add_trace(
                    go.Scatter(
                        x=steps,
                        y=[getattr(c, attr)[layer, head] for c in cps],
                        mode="lines",
                        line=dict(dash=dash),
                        name=f"L{layer}H{head} → {name}",
                    )
                )
    fig.update_layout(
        title="Attention to the current node (self) and the node before (t-1), per head",
        xaxis_title="step",
        yaxis_title="mean attention",
        height=460,
    )
    return fig


def _node_labels(nodes: np.ndarray, degree: np.ndarray | None) -> list[str]:
    if degree is None:
        return [f"node {n}" for n in nodes]
    return [f"node {n}, degree {int(k)}" for n, k in zip(nodes, degree)]
