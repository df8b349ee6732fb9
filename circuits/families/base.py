"""The analysis side of a task family: what `interp analyze` and the report ask of it.

`AnalyzedFamily` extends `interp.registry.Family` with the per-checkpoint analysis
(`analyze`, returning a `circuits.pipeline.analyze.RunAnalysis` of frozen per-checkpoint results),
the family's one phase definition, the summary lines and the report's views. The
defaults suit a family with `train`/`test` splits and no analysis parts of its own, so a
new family can start from `build_task` alone and add parts later.
"""

from __future__ import annotations

from typing import Any

from circuits.analyses.phases import MOVING, MilestoneSpec, compute_phases
from circuits.viz.views import ReportView, attention_view
from interp.registry import Family


class AnalyzedFamily(Family):
    """A family that `interp analyze` can analyze and report (see the module docstring)."""

    #: Names of the input positions, for figures (empty: `pos 0`, `pos 1`, …).
    position_names: tuple[str, ...] = ()
    #: The note under the report's transition timeline: how the phases are defined.
    timeline_note: str = (
        "Shaded spans are the task family's phases, dashed lines the milestones that bound "
        "them: memorization until train accuracy reaches 99 %, generalization until test "
        "accuracy does, then stable."
    )

    #: The family's phases (`circuits.analyses.phases`): milestones, and spans between them. By
    #: default,
    #: memorization until train accuracy reaches 99 %, generalization until test accuracy
    #: does, then stable.
    milestones: tuple[MilestoneSpec, ...] = (
        MilestoneSpec("memorized", "train fitted", "train_acc", 0.99),
        MilestoneSpec("generalized", "test acc ≥ 99%", "test_acc", 0.99),
    )
    #: The milestones a sweep's outcome classes read (`interp.sweep.table.outcome`): the
    #: training set fitted, and the held-out split generalized.
    fit_milestone: str = "memorized"
    generalize_milestone: str = "generalized"
    spans: tuple[tuple[str, str | None, str | None], ...] = (
        ("memorization", None, "memorized"),
        ("generalization", "memorized", "generalized"),
        ("stable", "generalized", None),
    )

    def analyze(
        self,
        run,
        parts: tuple[str, ...],
        steps: list[int],
        *,
        workers: int,
        progress: bool,
        figures: bool = True,
    ):
        """Every checkpoint in `steps`, the requested `parts` (already validated); with
        `figures`, also what only the report draws."""
        from circuits.pipeline.analyze import analyze_basic_run

        return analyze_basic_run(run, self, parts, steps, workers=workers, progress=progress)

    #: The columns whose movement the leads table reports, when the analysis has them
    #: (`circuits.analyses.phases.half_change_step`).
    moving: tuple[str, ...] = MOVING

    def phases(self, rows: list[dict[str, Any]], collapses=()):
        """The phases of this table (`milestones`, `spans`), the last span ended by a collapse."""
        return compute_phases(rows, self.milestones, self.spans).ended_by(collapses)

    def leads(self, rows: list[dict[str, Any]]) -> dict[str, int | None]:
        """First steps at which the progress measure and test accuracy reach a level."""
        from circuits.analyses.phases import first_crossing

        return {
            "circuit_score>=0.5": first_crossing(rows, "circuit_score", 0.5),
            "test_acc>=0.5": first_crossing(rows, "test_acc", 0.5),
            "test_acc>=0.99": first_crossing(rows, "test_acc", 0.99),
        }

    def summary_facts(self, result) -> dict[str, Any]:
        """The family's own fields of `analysis/summary.json` (e.g. the modular key frequencies,
        a walk's entropy rate and count-based limits), from its `RunAnalysis`."""
        return {}

    def summary_lines(self, info: dict[str, Any]) -> list[str]:
        """Family-specific lines of the CLI summary (after the header line), from summary.json
        (`info`, which holds `summary_facts`)."""
        return []

    def report_facts(self, result) -> list[tuple[str, str]]:
        """Extra rows of the report's header table, e.g. the key frequencies."""
        return []

    def report_views(self, result, context) -> list[ReportView]:
        """The family's report sections, after the header and the transition timeline.
        `context` is a `circuits.viz.report.ReportContext` (the checkpoints the slider views
        show)."""
        return [attention_view(result, context)]

    def sweep_columns(self, config, metrics: list[dict[str, Any]]) -> dict[str, Any]:
        """Extra columns of this run's row in a sweep table (`interp.sweep.table`), from its
        config and metrics rows. A family with a scaling study adds `scaling_loss`,
        `scaling_irreducible` and `optimization_limited` here
        (`interp.sweep.study.Sweep.scaling`)."""
        return {}
