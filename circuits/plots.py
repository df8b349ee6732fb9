"""Plotly figures of a `RunAnalysis`. Pure: each function returns a Figure, nothing is shown.

plotly is imported only here (and in the report modules), never in the analyses.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from circuits.analyze import RunAnalysis

PHASE_COLORS = {"memorization": "#fde0dd", "circuit_formation": "#e0ecf4", "cleanup": "#e5f5e0"}


def _add_phases(fig: go.Figure, result: RunAnalysis, rows: int = 1) -> None:
    for name, span in result.phases.to_dict().items():
        if name not in PHASE_COLORS or span["start"] is None:
            continue
        end = span["end"] if span["end"] is not None else result.steps[-1]
        for r in range(1, rows + 1):
            fig.add_vrect(x0=max(span["start"], 1), x1=max(end, 1), fillcolor=PHASE_COLORS[name], opacity=0.5,
                          line_width=0, layer="below", row=r, col=1,
                          annotation_text=name.replace("_", " ") if r == 1 else None, annotation_position="top left")


def plot_timeline(result: RunAnalysis) -> go.Figure:
    """Losses (log scale) on top; accuracies and the circuit score below; phases shaded."""
    rows = result.rows
    steps = [max(r["step"], 1) for r in rows]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Loss (float64 cross-entropy)", "Accuracy and circuit score"))
    for key, name in [("train_loss", "train loss"), ("test_loss", "test loss"),
                      ("restricted_loss", "restricted loss (test)"), ("excluded_loss", "excluded loss (train)")]:
        if key in rows[0]:
            fig.add_trace(go.Scatter(x=steps, y=[max(r[key], 1e-12) for r in rows], name=name, mode="lines",
                                     hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3g}}<extra></extra>"), row=1, col=1)
    for key, name in [("train_acc", "train accuracy"), ("test_acc", "test accuracy"), ("circuit_score", "circuit score")]:
        fig.add_trace(go.Scatter(x=steps, y=[r[key] for r in rows], name=name, mode="lines",
                                 line={"width": 3 if key == "circuit_score" else 2},
                                 hovertemplate=f"{name}<br>step %{{x}}<br>%{{y:.3f}}<extra></extra>"), row=2, col=1)
    _add_phases(fig, result, rows=2)
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(range=[-0.02, 1.02], title_text="fraction", row=2, col=1)
    fig.update_xaxes(type="log", title_text="training step", row=2, col=1)
    fig.update_layout(title="Transition timeline", height=650, hovermode="x unified")
    return fig


def plot_embedding_norms(result: RunAnalysis) -> go.Figure:
    """Norm of the embedding in each Fourier frequency, over training (heatmap)."""
    cps = [c for c in result.checkpoints if c.embed_freq_norms is not None]
    z = torch.stack([c.embed_freq_norms for c in cps]).T[1:]  # drop the constant
    freqs = [f"freq {k}" + (" (key)" if k in result.key_frequencies else "") for k in range(1, z.shape[0] + 1)]
    fig = go.Figure(go.Heatmap(z=z.numpy(), x=[c.step for c in cps], y=freqs, colorscale="Viridis",
                               colorbar={"title": "‖F W_E‖"},
                               hovertemplate="step %{x}<br>%{y}<br>norm %{z:.3f}<extra></extra>"))
    fig.update_layout(title="Embedding Fourier norms per frequency over training", xaxis_title="training step",
                      yaxis_title="frequency k", height=600)
    return fig


def plot_final_spectrum(result: RunAnalysis) -> go.Figure:
    """Fourier norms of W_E and W_L = W_out W_U at the final checkpoint."""
    last = [c for c in result.checkpoints if c.embed_freq_norms is not None][-1]
    ks = list(range(1, last.embed_freq_norms.shape[0]))
    fig = go.Figure()
    fig.add_bar(x=ks, y=last.embed_freq_norms[1:].numpy(), name="embedding W_E")
    fig.add_bar(x=ks, y=last.unembed_freq_norms[1:].numpy(), name="neuron→logit map W_L")
    fig.update_layout(title=f"Fourier norms at step {last.step} (key frequencies: {result.key_frequencies})",
                      xaxis_title="frequency k", yaxis_title="L2 norm", barmode="group")
    return fig


def plot_attention(result: RunAnalysis) -> go.Figure:
    """Mean attention from the answer position to each input position, per head, over training."""
    cps = [c for c in result.checkpoints if c.final_attention is not None]
    att = torch.stack([c.final_attention for c in cps])  # [step, layer, head, key_pos]
    fig = go.Figure()
    names = ["a", "b", "="]
    for layer in range(att.shape[1]):
        for head in range(att.shape[2]):
            for pos in range(att.shape[3]):
                fig.add_trace(go.Scatter(x=[c.step for c in cps], y=att[:, layer, head, pos].numpy(), mode="lines",
                                         name=f"L{layer}H{head} → {names[pos] if pos < 3 else pos}"))
    fig.update_layout(title="Attention from the answer position", xaxis_title="training step",
                      yaxis_title="mean attention weight", yaxis_range=[0, 1])
    return fig


def plot_attribution(result: RunAnalysis) -> go.Figure:
    """Direct logit attribution of each component to the correct answer, over training."""
    cps = [c for c in result.checkpoints if c.dla is not None]
    values = torch.stack([c.dla for c in cps])
    fig = go.Figure()
    for i, name in enumerate(cps[0].dla_names or []):
        fig.add_trace(go.Scatter(x=[c.step for c in cps], y=values[:, i].numpy(), mode="lines", name=name))
    fig.update_layout(title="Direct logit attribution to the correct answer (centered logit)",
                      xaxis_title="training step", yaxis_title="contribution to the correct logit")
    return fig


def analysis_figures(result: RunAnalysis) -> list[go.Figure]:
    figs = [plot_timeline(result)]
    if "fourier" in result.parts:
        figs += [plot_embedding_norms(result), plot_final_spectrum(result)]
    if "attention" in result.parts:
        figs.append(plot_attention(result))
    if "attribution" in result.parts:
        figs.append(plot_attribution(result))
    return figs


def figures_html(figures: list[go.Figure], title: str, intro: Any = "") -> str:
    """One self-contained page: plotly.js inlined once, then every figure."""
    parts = []
    for i, fig in enumerate(figures):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"figure-{i}"))
    body = "\n".join(parts)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head>"
            f"<body><h1>{title}</h1>{intro}{body}</body></html>")
