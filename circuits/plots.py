"""Figures of a `RunAnalysis`, kept for existing callers: the figures live in `circuits.viz`.

`analysis_figures(result)` lists the analysis-only figures (no checkpoint reloads);
`figures_html` puts figures on one offline page (plotly.js once). The full report, with
the circuit graph and circuitsvis attention, is `circuits.viz.report`.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from circuits.viz.figures import (
    plot_attention_over_training as plot_attention,
    plot_attribution,
    plot_embedding_norms_over_training as plot_embedding_norms,
    plot_embedding_spectrum as plot_final_spectrum,
    plot_entity_measures,
    plot_neuron_clusters,
    plot_timeline,
)
from circuits.viz.page import Page

__all__ = ["analysis_figures", "figures_html", "plot_attention", "plot_attribution", "plot_embedding_norms",
           "plot_entity_measures", "plot_final_spectrum", "plot_neuron_clusters", "plot_timeline"]


def analysis_figures(result) -> list[go.Figure]:
    figs = [plot_timeline(result)]
    if getattr(result, "kind", "modular") != "modular":
        entity = plot_entity_measures(result)
        figs += [entity] if entity is not None else []
    if "fourier" in result.parts:
        figs += [plot_embedding_norms(result), plot_final_spectrum(result), plot_neuron_clusters(result)]
    if "attention" in result.parts:
        figs.append(plot_attention(result))
    if "attribution" in result.parts:
        figs.append(plot_attribution(result))
    return figs


def figures_html(figures: list[go.Figure], title: str, intro: Any = "") -> str:
    """One self-contained page: plotly.js inlined once, then every figure."""
    page = Page(title, intro=str(intro))
    for fig in figures:
        page.add(fig)
    return page.render()
