"""Figures of circuit discovery across training (`circuits.analyses.circuit_timeline`): the edge ×
checkpoint map, circuit size and faithfulness on the transition timeline, and the circuit
graph per checkpoint with a slider."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from circuits.pipeline.figure_steps import pick_steps
from circuits.viz.figures import add_checkpoint_slider, add_phases

#: Edges shown in the map: the largest by their peak |score| / gap over the run.
MAP_EDGES = 30
#: Checkpoints the graph slider offers.
GRAPH_STEPS = 30


def _fractions(timeline) -> np.ndarray:
    """Scores as fractions of each checkpoint's clean − corrupt gap [checkpoint, edge] (NaN
    where there is no gap to explain)."""
    rows = []
    for c in timeline.checkpoints:
        scores = c.scores.numpy().astype(float)
        rows.append(scores / c.gap if c.circuit is not None else np.full_like(scores, np.nan))
    return np.array(rows)


def plot_edge_map(result) -> go.Figure:
    """Edge × checkpoint: each edge's score as a fraction of the gap, the `MAP_EDGES` edges
    with the largest peak; the phases shaded above."""
    timeline = result.circuits
    frac = _fractions(timeline)
    peak = np.nan_to_num(np.abs(frac)).max(axis=0)
    chosen = np.argsort(-peak, kind="stable")[: min(MAP_EDGES, frac.shape[1])]
    chosen = [int(i) for i in chosen if peak[i] > 0]
    final = timeline.final_circuit()
    labels = [
        timeline.edge_names[i] + (" ●" if final is not None and bool(final.keep[i]) else "")
        for i in chosen
    ]
    fig = make_subplots(rows=1, cols=1)
    limit = float(np.nanmax(np.abs(frac[:, chosen]))) if chosen else 1.0
    fig.add_trace(
        go.Heatmap(
            x=timeline.steps,
            y=labels,
            z=frac[:, chosen].T,
            zmid=0,
            zmin=-limit,
            zmax=limit,
            colorscale="RdBu_r",
            colorbar=dict(title="score / gap"),
            hovertemplate="step %{x}<br>%{y}<br>score / gap %{z:.3f}<extra></extra>",
        )
    )
    add_phases(fig, result, 1)
    fig.update_layout(
        title="Edge scores over training (fraction of the clean − corrupt gap; ● = final circuit)",
        xaxis_title="step",
        yaxis=dict(autorange="reversed"),
        height=max(420, 18 * len(chosen) + 160),
    )
    return fig


def plot_circuit_size(result) -> go.Figure:
    """Circuit size (edges; neurons for one-layer models) above, faithfulness and overlap with
    the final circuit below, on the run's phases."""
    rows = result.circuits.rows()
    steps = result.circuits.steps
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08)
    for column, name in (("circuit_edges", "edges"), ("circuit_neurons", "MLP neurons")):
        if column in rows[steps[0]]:
            fig.add_trace(
                go.Scatter(x=steps, y=[rows[s][column] for s in steps], name=name, mode="lines"),
                row=1,
                col=1,
            )
    for column, name in (
        ("circuit_faithfulness", "faithfulness (edges)"),
        ("circuit_neuron_faithfulness", "faithfulness (neurons)"),
        ("circuit_overlap", "overlap with the final circuit"),
    ):
        if column in rows[steps[0]]:
            fig.add_trace(
                go.Scatter(x=steps, y=[rows[s][column] for s in steps], name=name, mode="lines"),
                row=2,
                col=1,
            )
    add_phases(fig, result, 2)
    fig.update_yaxes(title_text="circuit size", row=1, col=1)
    fig.update_yaxes(title_text="fraction", range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(
        title="Smallest faithful circuit (≥ 90 % of the gap) over training", height=560
    )
    return fig


def _node_xy(name: str) -> tuple[float, float]:
    """Layout: embedding left, each layer's heads in a column then its MLP, logits right."""
    if name == "embed":
        return 0.0, 0.0
    if name == "logits":
        return 1e3, 0.0
    layer = int(name[1:].split(".")[0])
    if name.startswith("a"):
        head = int(name.split(".")[1])
        return 2 * layer + 1.0, float(head) - 1.5
    return 2 * layer + 2.0, 2.2  # above the heads: lines through it would hide others


def plot_circuit_graph(result) -> go.Figure | None:
    """The circuit at each of up to `GRAPH_STEPS` checkpoints (slider): components as nodes,
    edges (summed over positions) as lines whose width is their share of the gap."""
    timeline = result.circuits
    cps = [c for c in timeline.checkpoints if c.circuit is not None]
    if not cps:
        return None
    keep_steps = set(pick_steps([c.step for c in cps], GRAPH_STEPS, []))
    cps = [c for c in cps if c.step in keep_steps]
    pairs = sorted(set(zip(timeline.edge_writer, timeline.edge_reader)))
    index = {pair: i for i, pair in enumerate(pairs)}
    edge_pair = np.array([index[p] for p in zip(timeline.edge_writer, timeline.edge_reader)])
    nodes = sorted(set(timeline.edge_writer) | set(timeline.edge_reader), key=_node_xy)
    last_x = max(_node_xy(n)[0] for n in nodes if n != "logits") + 1
    xy = {n: (last_x if n == "logits" else _node_xy(n)[0], _node_xy(n)[1]) for n in nodes}
    fig = go.Figure()
    for writer, reader in pairs:
        (x0, y0), (x1, y1) = xy[writer], xy[reader]
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line=dict(width=0, color="#d62728"),
                hoverinfo="name",
                name=f"{writer}→{reader}",
                showlegend=False,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[xy[n][0] for n in nodes],
            y=[xy[n][1] for n in nodes],
            mode="markers+text",
            text=nodes,
            textposition="top center",
            marker=dict(size=14, color="#1f77b4"),
            hoverinfo="text",
            showlegend=False,
        )
    )
    restyles, titles = [], []
    for c in cps:
        share = np.zeros(len(pairs))
        kept = c.circuit.keep.numpy()
        np.add.at(share, edge_pair[kept], np.abs(c.scores.numpy()[kept]) / max(abs(c.gap), 1e-9))
        widths = [float(min(12.0, 1.0 + 10 * s)) if s > 0 else 0.0 for s in share]
        restyles.append({"line.width": widths, "opacity": [1.0 if w else 0.0 for w in widths]})
        titles.append(
            f"Circuit at step {c.step}: {c.circuit.size} edges, faithfulness "
            f"{c.circuit.faithfulness:.2f}"
        )
    add_checkpoint_slider(
        fig, [c.step for c in cps], restyles, titles, traces=list(range(len(pairs)))
    )
    fig.update_layout(
        xaxis=dict(visible=False), yaxis=dict(visible=False), height=520, margin=dict(b=140)
    )
    return fig


def circuit_views(result) -> list[tuple[str, object, str]]:
    """The report's circuit sections: (title, make, note)."""
    timeline = result.circuits
    about = (
        f"Scores: {timeline.method}, on {timeline.n_examples} clean/corrupt pairs (the same at "
        f"every checkpoint); metric: {timeline.metric}. A score is ≈ metric(clean) − metric("
        "clean with that edge corrupted). The circuit is the fewest top-|score| edges that "
        "recover ≥ 90 % of the gap with every other edge ablated to its corrupted value "
        "(docs/circuits.md)."
    )
    return [
        ("Circuit size and faithfulness", lambda: plot_circuit_size(result), about),
        ("Edges over training", lambda: plot_edge_map(result), about),
        ("Discovered circuit per checkpoint", lambda: plot_circuit_graph(result), about),
    ]
