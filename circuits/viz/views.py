"""What a task family's report sections are made of (`circuits.viz.report` lays them out).

A `ReportView` is one section, made lazily; `ReportContext` is what views may use beyond
the analysis. `attention_view` is the circuitsvis attention section every family can use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReportView:
    """One section of the report: `make()` returns a plotly figure, a circuitsvis item or
    HTML (None = not computed by this analysis); `omitted` gives the reason up front when
    the view cannot be drawn (then `make` is not called)."""

    title: str
    make: Callable[[], Any] | None = None
    note: str = ""
    omitted: str = ""


@dataclass(frozen=True)
class ReportContext:
    """What the family's views may use besides the whole analysis: the checkpoints the heavy
    slider views show (`pick_steps` with the phase boundaries), whose figure data (circuit
    graph, attention pattern) the analysis computed in its pass."""

    shown: list[Any]


#: Why a figure-data view is missing.
NO_FIGURES = (
    "computed only by an analysis with figures (`analyze_run(..., figures=True)`, the default)"
)


def attention_view(result, context: ReportContext) -> ReportView:
    """The circuitsvis attention patterns per head at the shown checkpoints (every family)."""
    with_patterns = [c for c in context.shown if getattr(c, "attention_pattern", None) is not None]
    if not with_patterns:
        return ReportView("Attention patterns (circuitsvis)", omitted=NO_FIGURES)

    def make():
        from circuits.viz.attention import analysis_attention_view

        return analysis_attention_view(result, with_patterns)

    return ReportView("Attention patterns (circuitsvis)", make, _ATTENTION_NOTE)


_ATTENTION_NOTE = (
    "Attention patterns per head, averaged over inputs (query position down, key position "
    "across). Click a head's thumbnail to enlarge it; the slider picks the checkpoint."
)
