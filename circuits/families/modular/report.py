"""The modular family's report views: the circuit graph, the Fourier views, direct logit
attribution and attention, in the report's order (`circuits.viz.report` draws the header
and the timeline before them)."""

from __future__ import annotations

from circuits.families.modular import figures as M
from circuits.viz import attribution as A
from circuits.viz import figures as F
from circuits.viz.views import ReportView

_GRAPH_NOTE = (
    "Nodes are components; MLP neurons are grouped by the frequency cluster they belong to at the "
    "final "
    "checkpoint. Edges carry the mean contribution of a path to the correct answer's centered "
    "logit over "
    "the training examples; their colour is the share of it that lies in the key-frequency Fourier "
    "directions (blue: generalizing circuit, red: memorization). Hover the small grey dots (edges) "
    "and "
    "the nodes for values; drag the slider to move through checkpoints."
)
_SPECTRUM_NOTE = (
    "L2 norm of the number-token embedding W_E and of the neuron-to-logit map W_L = W_out·W_U "
    "in each Fourier frequency. A generalizing model concentrates both on a few key frequencies."
)
_CLUSTER_NOTE = (
    "A neuron belongs to frequency k when at least 85 % of the variance of its activation over all "
    "inputs lies in frequency k (Nanda et al. 2023)."
)
_DLA_NOTE = (
    "How much each component writes to the correct answer's logit (minus the mean logit), averaged "
    "over all inputs; the contributions add up to the model's centered correct logit."
)


def modular_views(result, context) -> list[ReportView]:
    from circuits.viz.views import attention_view

    parts = set(result.parts)
    views = [_graph_view(result, context)]
    if "fourier" in parts:
        views += [
            ReportView(
                "Fourier spectrum of the embedding and W_L",
                lambda: M.plot_embedding_spectrum(result),
                _SPECTRUM_NOTE,
            ),
            ReportView(
                "Embedding Fourier norms over training",
                lambda: M.plot_embedding_norms_over_training(result),
            ),
            ReportView(
                "Neuron-frequency clusters", lambda: M.plot_neuron_clusters(result), _CLUSTER_NOTE
            ),
        ]
    else:
        views.append(
            ReportView("Fourier views", omitted="the analysis was run without the fourier part")
        )
    if "attribution" in parts:
        views += [
            ReportView("Direct logit attribution", lambda: A.plot_attribution(result), _DLA_NOTE),
            ReportView(
                "Direct logit attribution over training",
                lambda: A.plot_attribution_over_training(result),
            ),
        ]
    else:
        views.append(
            ReportView(
                "Direct logit attribution",
                omitted="the analysis was run without the attribution part",
            )
        )
    views.append(attention_view(result, context))
    if "attention" in parts:
        views.append(
            ReportView(
                "Attention from the answer position over training",
                lambda: M.plot_attention_over_training(result),
            )
        )
    return views


def _graph_view(result, context) -> ReportView:
    from circuits.viz.views import NO_FIGURES

    graphs = [c.graph for c in context.shown if c.graph is not None]
    if not graphs:
        return ReportView("Circuit graph", omitted=NO_FIGURES)

    def make():
        from circuits.viz.circuit_graph import plot_circuit_graph

        return plot_circuit_graph(graphs, keep_steps=F.phase_steps(result))

    return ReportView("Circuit graph", make, _GRAPH_NOTE)
