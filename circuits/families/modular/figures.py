"""The modular family's figures: the Fourier spectrum of the embedding and W_L, neuron
clusters, direct logit attribution, and attention from the answer position over training.

Frequencies are named `k=…` (frequency k means cos/sin(2πk·x/p)); key frequencies are
marked "(key)" and drawn in a darker colour.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch

from circuits.viz.figures import (
    EMBED_COLOR,
    KEY_COLOR,
    OTHER_COLOR,
    UNEMBED_COLOR,
    add_checkpoint_slider,
    checkpoints_with,
    freq_label,
)

# --------------------------------------------------------------------------------------
# Fourier views
# --------------------------------------------------------------------------------------


def plot_embedding_spectrum(result, max_steps: int = 60) -> go.Figure:
    """Fourier norm of W_E and of W_L = W_out·W_U per frequency, one checkpoint at a time."""
    cps = checkpoints_with(result, "embed_freq_norms", max_steps)
    keys = result.key_frequencies
    n_freq = cps[0].embed_freq_norms.shape[0] - 1
    ks = list(range(1, n_freq + 1))
    labels = [freq_label(k, keys) for k in ks]
    fig = go.Figure(
        [
            go.Bar(
                x=labels,
                y=[0.0] * n_freq,
                name="embedding W_E",
                marker_color=EMBED_COLOR,
                hovertemplate="%{x}<br>‖W_E in Fourier basis‖ = %{y:.3f}<extra>W_E</extra>",
            ),
            go.Bar(
                x=labels,
                y=[0.0] * n_freq,
                name="neuron→logit map W_L = W_out·W_U",
                marker_color=UNEMBED_COLOR,
                hovertemplate="%{x}<br>‖W_L in Fourier basis‖ = %{y:.3f}<extra>W_L</extra>",
            ),
        ]
    )
    restyles = [
        {"y": [c.embed_freq_norms[1:].tolist(), c.unembed_freq_norms[1:].tolist()]} for c in cps
    ]
    titles = [f"Fourier norms of the embedding and W_L per frequency, step {c.step}" for c in cps]
    add_checkpoint_slider(fig, [c.step for c in cps], restyles, titles)
    top = max(max(max(r["y"][0]), max(r["y"][1])) for r in restyles)
    fig.update_layout(
        barmode="group",
        xaxis_title="frequency k (cos/sin 2πk·x/p)",
        yaxis_title="L2 norm",
        yaxis_range=[0, top * 1.05 if top > 0 else 1],
        height=520,
        xaxis_tickangle=-60,
    )
    return fig


def plot_embedding_norms_over_training(result) -> go.Figure:
    """Heatmap: Fourier norm of the embedding per frequency (rows) at every checkpoint (columns)."""
    cps = [c for c in result.checkpoints if c.embed_freq_norms is not None]
    z = torch.stack([c.embed_freq_norms for c in cps]).T[1:]
    labels = [freq_label(k, result.key_frequencies) for k in range(1, z.shape[0] + 1)]
    fig = go.Figure(
        go.Heatmap(
            z=z.tolist(),
            x=[c.step for c in cps],
            y=labels,
            colorscale="Viridis",
            colorbar={"title": {"text": "‖F W_E‖"}},
            hovertemplate="step %{x}<br>%{y}<br>norm %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Embedding Fourier norms per frequency over training",
        xaxis_title="training step",
        yaxis_title="frequency k",
        height=max(400, 12 * z.shape[0] + 150),
    )
    return fig


def plot_neuron_clusters(result, max_steps: int = 60) -> go.Figure:
    """Number of MLP neurons whose activation is dominated by each frequency, per checkpoint.

    A neuron belongs to frequency k when ≥ 85 % of its variance over the p² inputs lies in
    the {const, cos k, sin k}² block of the 2-D Fourier transform; the rest are "unclustered".
    """
    cps = checkpoints_with(result, "neuron_frequency", max_steps)
    keys = result.key_frequencies
    n_freq = result.p // 2 if result.p else int(max(int(c.neuron_frequency.max()) for c in cps))
    labels = [freq_label(k, keys) for k in range(1, n_freq + 1)] + ["unclustered"]
    colors = [KEY_COLOR if k in keys else OTHER_COLOR for k in range(1, n_freq + 1)] + ["#bbbbbb"]
    d_mlp = cps[0].neuron_frequency.numel()

    def counts(c) -> list[int]:
        freq = c.neuron_frequency
        per_k = torch.bincount(freq[freq > 0], minlength=n_freq + 1)[1:].tolist()
        return per_k + [int((freq < 1).sum())]

    fig = go.Figure(
        go.Bar(
            x=labels,
            y=[0] * len(labels),
            marker_color=colors,
            name="neurons",
            customdata=[d_mlp] * len(labels),
            hovertemplate="%{x}: %{y} neurons of %{customdata}<extra></extra>",
        )
    )
    restyles = [{"y": [counts(c)]} for c in cps]
    titles = [
        f"MLP neurons per frequency cluster, step {c.step} ({sum(counts(c)[:-1])} of {d_mlp} "
        "clustered)"
        for c in cps
    ]
    add_checkpoint_slider(fig, [c.step for c in cps], restyles, titles)
    fig.update_layout(
        xaxis_title="frequency k of the neuron's cluster",
        yaxis_title="number of neurons",
        yaxis_range=[0, d_mlp * 1.02],
        height=480,
        xaxis_tickangle=-60,
        showlegend=False,
    )
    return fig


# --------------------------------------------------------------------------------------
# Attention over training
# --------------------------------------------------------------------------------------


def plot_attention_over_training(
    result, position_names: Sequence[str] = ("a", "b", "=")
) -> go.Figure:
    """Mean attention from the answer position to each input position, per head, over training."""
    cps = [c for c in result.checkpoints if c.final_attention is not None]
    att = torch.stack([c.final_attention for c in cps])  # [step, layer, head, key_pos]
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot"]
    for layer in range(att.shape[1]):
        for head in range(att.shape[2]):
            for pos in range(att.shape[3]):
                name = (
                    f"L{layer}H{head} → {position_names[pos] if pos < len(position_names) else pos}"
                )
                fig.add_trace(
                    go.Scatter(
                        x=[c.step for c in cps],
                        y=att[:, layer, head, pos].tolist(),
                        mode="lines",
                        name=name,
                        legendgroup=f"L{layer}H{head}",
                        line={"dash": dashes[pos % len(dashes)]},
                        hovertemplate=f"{name}: %{{y:.3f}}<extra></extra>",
                    )
                )
    fig.update_layout(
        title="Attention from the answer position to each input position, per head",
        xaxis_title="training step",
        yaxis_title="mean attention weight",
        yaxis_range=[0, 1],
        hovermode="x unified",
        height=450,
    )
    return fig
