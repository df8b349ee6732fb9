"""Figures of the entity families' analyses (`circuits.families.entity.measures.EntityCheckpoint`),
read from
the typed per-checkpoint results: logit lens, causal tracing, and the intermediate entity
over training. Each returns a plotly Figure, or None when the analysis lacks the part."""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from circuits.viz.figures import plot_layer_position


def _layers(n: int) -> list[str]:
    return ["embed"] + [f"after block {layer}" for layer in range(n - 1)]


def plot_logit_lens(result, position_names=None) -> go.Figure | None:
    """MRR of each logit-lens target (bridge at r1, answer at the last position, …) at every
    layer (0 = embeddings, l = after block l), per checkpoint; None without the lens."""
    cps = [c for c in result.checkpoints if getattr(c, "lens", None) is not None]
    if not cps:
        return None
    lens = cps[-1].lens
    values = torch.stack([c.lens.mrr.T for c in cps])  # [step, layer, target]
    names = [
        f"{name} @ {position_names[p] if position_names else f'position {p}'}"
        for name, p in zip(lens.names, lens.positions)
    ]
    return plot_layer_position(
        [c.step for c in cps],
        values,
        names,
        "Logit lens: MRR of each target per layer",
        "MRR",
        layer_names=_layers(values.shape[1]),
        x_title="target @ position",
    )


def plot_causal_tracing(result) -> go.Figure | None:
    """Fraction of answers moved to the counterfactual's by patching (layer, position) with the
    family's first swap, per checkpoint; None without the patching part."""
    cps = [c for c in result.checkpoints if getattr(c, "tracing", ())]
    if not cps:
        return None
    values = torch.stack([c.tracing[0].transferred for c in cps])  # [step, layer, pos]
    return plot_layer_position(
        [c.step for c in cps],
        values,
        ["first", "mid", "last"],
        f"Causal tracing ({cps[-1].tracing[0].swap} swap): answers transferred by patching",
        "fraction",
        layer_names=_layers(values.shape[1]),
        x_title="position (first / mid / last)",
    )


def plot_entity_measures(result, target: str) -> go.Figure | None:
    """The intermediate `target` (bridge, v1) over training: logit-lens MRR and probe accuracy
    per layer; None when the analysis has neither."""
    fig = go.Figure()
    lens_cps = [
        c
        for c in result.checkpoints
        if getattr(c, "lens", None) is not None and target in c.lens.names
    ]
    probe_cps = [
        c for c in result.checkpoints if any(p.target == target for p in getattr(c, "probes", ()))
    ]
    series = []
    if lens_cps:
        mrr = torch.stack([c.lens.mrr_of(target) for c in lens_cps])
        series.append(("logit-lens MRR", "solid", [c.step for c in lens_cps], mrr))
    if probe_cps:
        acc = torch.stack(
            [next(p for p in c.probes if p.target == target).accuracy for c in probe_cps]
        )
        series.append(("probe accuracy", "dot", [c.step for c in probe_cps], acc))
    for what, dash, steps, values in series:
        for layer in range(values.shape[1]):
            name = f"{what}, layer {layer}"
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=values[:, layer].tolist(),
                    name=name,
                    mode="lines",
                    line={"dash": dash},
                    hovertemplate=f"{name}: %{{y:.3f}}<extra></extra>",
                )
            )
    if not fig.data:
        return None
    fig.update_layout(
        title=f"Is the {target} readable from the residual stream? (per layer, over training)",
        xaxis_title="training step",
        yaxis_title="MRR / accuracy",
        yaxis_range=[-0.02, 1.02],
        hovermode="x unified",
        height=450,
    )
    return fig
