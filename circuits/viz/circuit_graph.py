"""The circuit graph (`circuits.analyses.circuit_graph.CircuitGraph`) drawn with plotly, one
checkpoint per slider
step.

Columns from left to right: embedding, attention heads (per layer), MLP (earlier layers
whole; the last layer's neurons by frequency cluster), unembedding. Edge width is the
size of the path's contribution to the correct logit (scaled to the largest over all
checkpoints, so growth is visible); edge and node colour is the generalization share
(red = memorization, blue = generalization, grey = undefined); dotted edges are negative.
Node size is the component's effect on the answer. Hover an edge midpoint or a node for values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import plotly.graph_objects as go

from circuits.analyses.circuit_graph import EMBED, UNEMBED, CircuitGraph
from circuits.viz.figures import add_checkpoint_slider, pick_steps

MEMORIZATION_RGB = (214, 39, 40)
GENERALIZATION_RGB = (31, 119, 180)
UNDEFINED_COLOR = "#aaaaaa"
SHARE_COLORSCALE = [[0.0, "rgb(214,39,40)"], [0.5, "rgb(148,103,189)"], [1.0, "rgb(31,119,180)"]]


def share_color(share: float, alpha: float = 0.85) -> str:
    if share is None or math.isnan(share):
        return UNDEFINED_COLOR
    s = min(max(share, 0.0), 1.0)
    # Through purple (the scale's middle) so a half share is not a muddy grey.
    mid = (148, 103, 189)
    lo, hi, t = (MEMORIZATION_RGB, mid, s * 2) if s < 0.5 else (mid, GENERALIZATION_RGB, s * 2 - 1)
    rgb = [round(a + (b - a) * t) for a, b in zip(lo, hi)]
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha})"


def _column(name: str, n_layers: int) -> float:
    if name == EMBED:
        return 0.0
    if name == UNEMBED:
        return 2.0 * n_layers + 1
    layer = (
        int(name[1 : name.index("H" if "H" in name.split()[0] else " ")])
        if name.startswith("L")
        else 0
    )
    if "MLP" in name:
        return 2.0 * layer + 2
    return 2.0 * layer + 1


def node_positions(nodes: Sequence[str]) -> dict[str, tuple[float, float]]:
    heads = [n for n in nodes if n not in (EMBED, UNEMBED) and "MLP" not in n]
    n_layers = 1 + max([int(n[1 : n.index("H")]) for n in heads] or [0])
    columns: dict[float, list[str]] = {}
    for n in nodes:
        columns.setdefault(_column(n, n_layers), []).append(n)
    pos = {}
    for x, members in columns.items():
        for i, n in enumerate(members):
            pos[n] = (x, (len(members) - 1) / 2 - i)
    return pos


def _fmt_share(s: float) -> str:
    return "n/a" if math.isnan(s) else f"{100 * s:.0f}% generalizing"


def plot_circuit_graph(
    graphs: Sequence[CircuitGraph],
    max_steps: int = 60,
    keep_steps: Sequence[int | None] = (),
    title: str = "Circuit graph",
) -> go.Figure:
    """The graphs of a run's checkpoints (same nodes and edges each) as one figure with a slider."""
    if not graphs:
        raise ValueError("no circuit graphs to draw")
    chosen = set(pick_steps([g.step for g in graphs], max_steps, keep_steps))
    graphs = [g for g in graphs if g.step in chosen]
    first = graphs[0]
    pos = node_positions(first.nodes)
    edges = first.edges
    scale = max(max((abs(w) for w in g.weight.tolist()), default=0.0) for g in graphs) or 1.0
    effect_scale = max(max(abs(v) for v in g.node_effect().values()) for g in graphs) or 1.0

    fig = go.Figure()
    for src, dst in edges:
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                hoverinfo="skip",
                showlegend=False,
                line={"width": 1, "color": UNDEFINED_COLOR},
            )
        )
    # Hover targets at the edge midpoints (lines themselves have no hover text in plotly).
    mid_x = [(pos[s][0] + pos[d][0]) / 2 for s, d in edges]
    mid_y = [(pos[s][1] + pos[d][1]) / 2 for s, d in edges]
    fig.add_trace(
        go.Scatter(
            x=mid_x,
            y=mid_y,
            mode="markers",
            marker={"size": 7, "color": "rgba(80,80,80,0.35)"},
            hoverinfo="text",
            showlegend=False,
            name="edges",
        )
    )
    names = list(first.nodes)
    fig.add_trace(
        go.Scatter(
            x=[pos[n][0] for n in names],
            y=[pos[n][1] for n in names],
            mode="markers+text",
            text=names,
            textposition="top center",
            hoverinfo="text",
            showlegend=False,
            name="components",
            marker={
                "size": 20,
                "color": [0.5] * len(names),
                "colorscale": SHARE_COLORSCALE,
                "cmin": 0,
                "cmax": 1,
                "line": {"width": 1, "color": "#333"},
                "colorbar": {
                    "title": {"text": "generalization<br>share"},
                    "tickvals": [0, 0.5, 1],
                    "ticktext": ["0 (memorization)", "0.5", "1 (generalization)"],
                },
            },
        )
    )
    n_edges = len(edges)
    restyles, titles = [], []
    for g in graphs:
        weights, shares = g.weight.tolist(), g.generalization_share.tolist()
        effect, node_share = g.node_effect(), g.node_share()
        widths = [0.5 + 11 * abs(w) / scale for w in weights]
        colors = [share_color(s) for s in shares]
        dashes = ["solid" if w >= 0 else "dot" for w in weights]
        edge_text = [
            f"{s} → {d}<br>contribution {w:+.3f}<br>{_fmt_share(sh)}"
            for (s, d), w, sh in zip(edges, weights, shares)
        ]
        node_text = [
            f"{n}<br>effect on answer {effect[n]:+.3f}<br>{_fmt_share(node_share[n])}"
            for n in names
        ]
        sizes = [14 + 30 * math.sqrt(abs(effect[n]) / effect_scale) for n in names]
        node_colors = [0.5 if math.isnan(node_share[n]) else node_share[n] for n in names]
        restyles.append(
            {
                "line.width": widths + [None, None],
                "line.color": colors + [None, None],
                "line.dash": dashes + [None, None],
                "hovertext": [None] * n_edges + [edge_text, node_text],
                "marker.size": [None] * n_edges + [7, sizes],
                "marker.color": [None] * n_edges + ["rgba(80,80,80,0.35)", node_colors],
            }
        )
        titles.append(
            f"{title}, step {g.step}: mean centered correct logit {g.total_logit:+.2f} (train)"
        )
    add_checkpoint_slider(fig, [g.step for g in graphs], restyles, titles)
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    fig.update_layout(
        height=max(460, 70 * (max(ys) - min(ys)) + 300),
        plot_bgcolor="white",
        xaxis={"visible": False, "range": [min(xs) - 0.4, max(xs) + 0.4]},
        yaxis={"visible": False, "range": [min(ys) - 0.8, max(ys) + 0.8]},
        annotations=[
            {
                "text": "edge width = |contribution to the correct logit|; "
                "colour = generalization share; "
                "dotted = negative",
                "xref": "paper",
                "yref": "paper",
                "x": 0,
                "y": 1.02,
                "showarrow": False,
                "font": {"size": 11, "color": "#555"},
                "xanchor": "left",
            }
        ],
    )
    return fig
