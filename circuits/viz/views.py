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
    """What the family's views may use besides the analysis: the run (None when it cannot be
    opened, with the reason) and the checkpoints the slider views that need models show."""

    run: Any
    run_error: str
    model_steps: list[int]


def attention_view(result, context: ReportContext, position_names=None) -> ReportView:
    """The circuitsvis attention patterns per head at the shown checkpoints (every family)."""
    if context.run is None:
        return ReportView("Attention patterns (circuitsvis)", omitted=context.run_error)

    def make():
        from circuits.viz.attention import attention_over_checkpoints

        return attention_over_checkpoints(
            context.run,
            context.model_steps,
            token_labels=list(position_names) if position_names else None,
        )

    return ReportView("Attention patterns (circuitsvis)", make, _ATTENTION_NOTE)


_ATTENTION_NOTE = (
    "Attention patterns per head, averaged over inputs (query position down, key position "
    "across). Click a head's thumbnail to enlarge it; the slider picks the checkpoint."
)
