"""The self-contained HTML report of an analyzed run.

`report_html(result)` renders one offline page (plotly.js and the circuitsvis bundle
inlined once each) with, in order: the run's settings and headline numbers, the
transition timeline with the task family's phases, then the family's own views
(`AnalyzedFamily.report_views`; modular: `circuits.families.modular.report`, entity families:
`circuits.families.entity.family`). A view whose ingredients are missing (an analysis part that
was not run, an analysis without figures) is left out and listed at the end with the
reason, so a partial analysis still yields a report.

Every view reads only the `RunAnalysis`: the circuit graph and the attention patterns were
computed in the analysis' one pass over the checkpoints, so no checkpoint is loaded and no
model is run here.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuits.pipeline.figure_steps import MAX_FIGURE_STEPS
from circuits.viz import figures as F
from circuits.viz.page import Page
from circuits.viz.views import ReportContext

#: Checkpoints shown by the circuit-graph and circuitsvis sliders; the analysis computes their
#: data only at the checkpoints such a slider may show
#: (`circuits.pipeline.figure_steps.SliderSteps`).
MAX_MODEL_STEPS = MAX_FIGURE_STEPS


@dataclass
class Report:
    page: Page
    omitted: list[tuple[str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def figures(self) -> list[str]:
        return self.page.figure_titles

    def render(self) -> str:
        return self.page.render()


def build_report(
    result, run=None, *, max_model_steps: int = MAX_MODEL_STEPS, title: str | None = None
) -> Report:
    """Assemble the report of `result` (a `circuits.pipeline.analyze.RunAnalysis`): the header, the
    transition timeline, then the views of the run's task family (`report_views`). Of
    `run`, if given, only the config is read, for an analysis that does not carry one."""
    config = getattr(result, "config", None) or getattr(run, "config", None)
    name = title or f"interp report: {Path(result.run_dir).name}"
    report = Report(Page(name, intro=_intro(result, config)))
    page, omitted = report.page, report.omitted

    def attempt(label: str, make, note: str = "") -> None:
        start = time.perf_counter()
        try:
            item = make()
        except Exception as exc:  # one broken view must not cost the whole report
            omitted.append((label, f"{type(exc).__name__}: {exc}"))
            return
        finally:
            report.seconds[label] = time.perf_counter() - start
        if item is None:
            omitted.append((label, "not computed by this analysis"))
        else:
            page.add(item, title=label, note=note)

    attempt("Transition timeline", lambda: F.plot_timeline(result), result.family.timeline_note)
    shown = set(F.pick_steps(result.steps, max_model_steps, F.phase_steps(result)))
    context = ReportContext([c for c in result.checkpoints if c.step in shown])
    for view in result.family.report_views(result, context):
        if view.omitted or view.make is None:
            omitted.append((view.title, view.omitted or "not computed by this analysis"))
        else:
            attempt(view.title, view.make, view.note)
    if getattr(result, "circuits", None) is not None:
        from circuits.viz.circuit_figures import circuit_views

        for title, make, note in circuit_views(result):
            attempt(title, make, note)
    if omitted:
        items = "".join(f"<li><b>{html.escape(a)}</b>: {html.escape(b)}</li>" for a, b in omitted)
        page.add(f"<ul>{items}</ul>", title="Views not in this report")
    return report


def report_html(result, run=None, **kwargs: Any) -> str:
    return build_report(result, run, **kwargs).render()


def write_report(result, path: str | Path, run=None, **kwargs: Any) -> Report:
    """Write the report atomically to `path`; returns the `Report` (figure list, timings)."""
    from interp.runs import atomic_write_bytes

    report = build_report(result, run, **kwargs)
    atomic_write_bytes(Path(path), report.render().encode("utf-8"))
    return report


def _value_text(result, key: str, value: float) -> str:
    """`key value`, with the 95 % Wilson interval for an accuracy measured on a small split."""
    from interp.metrics import format_accuracy

    n = getattr(result, "split_sizes", {}).get(key) if key.endswith("_acc") else None
    return f"{key} {format_accuracy(value, n)}"


def _intro(result, config) -> str:

    rows: list[tuple[str, str]] = []
    if config is not None:
        t, m, tr = config.task, config.model, config.train
        task = f"{t.kind} {result.family.describe(t)}"
        rows += [
            ("task", task),
            (
                "model",
                f"{m.n_layers} layer(s), d_model {m.d_model}, {m.n_heads} heads × d_head "
                f"{m.d_head}, "
                f"d_mlp {m.d_mlp}, {m.act_fn}, norm {m.normalization}",
            ),
            (
                "training",
                f"{tr.steps} steps, lr {tr.lr}, weight decay {tr.weight_decay}, "
                f"batch {'full' if tr.batch_size == 0 else tr.batch_size}, filter {tr.grad_filter}",
            ),
        ]
    rows.append(
        (
            "checkpoints analyzed",
            f"{len(result.steps)} (steps {result.steps[0]}–{result.steps[-1]})",
        )
    )
    rows += result.family.report_facts(result)
    rows.append(("phases", result.phases.describe() or "train set not yet fitted"))
    last = result.rows[-1]
    rows.append(
        (
            "final checkpoint",
            ", ".join(
                _value_text(result, k, last[k])
                for k in ("train_acc", "test_acc", "train_loss", "test_loss", "circuit_score")
                if isinstance(last.get(k), (int, float))
            ),
        )
    )
    small = [
        k
        for k in sorted(last)
        if k.endswith("_acc")
        and k not in ("train_acc", "test_acc")
        and isinstance(last[k], float)
        and hasattr(result, "interval")
        and result.interval(k, last[k])
    ]
    if small:
        rows.append(
            (
                "small splits (95 % Wilson interval)",
                ", ".join(_value_text(result, k, last[k]) for k in small),
            )
        )
    for event in getattr(result, "collapses", []):
        rows.append(("collapse", event.describe()))
    if getattr(result, "best", None):
        best = result.best
        rows.append(
            (
                "best checkpoint",
                f"step {best['step']} ({best['criterion']} {best['value']:.4g}; "
                "selected without test data)",
            )
        )
    for file, reason in getattr(result, "skipped", []):
        rows.append(("skipped checkpoint", reason))
    leads = result.leads() if hasattr(result, "leads") else {}
    if leads:
        rows.append(
            (
                "first steps",
                ", ".join(f"{k} at {v if v is not None else '—'}" for k, v in leads.items()),
            )
        )
    body = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows)
    folder = html.escape(str(result.run_dir))
    return f"<p>Run folder: <code>{folder}</code></p><table class='meta'>{body}</table>"
