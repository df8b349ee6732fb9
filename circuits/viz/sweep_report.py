"""The offline HTML report of a sweep (`interp sweep analyze`): one page, plotly inlined once.

In order: what the sweep is (runs done and failed, disk use, axes), the outcome counts, a
phase diagram over two varied axes (the first two, or the ones asked for), for every numeric
varied axis the generalization step against it with intervals over seeds and fitted power
laws (with their parameters and intervals in a table) and the final test accuracy against
it, then the failed runs with their errors. The thresholds behind the outcome classes are
in `interp.sweep.table`.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from circuits.viz.page import Page
from circuits.viz.sweep_figures import plot_events, plot_metric, plot_phase_diagram, plot_scaling
from interp.sweep.table import GROKKING_DELAY, OUTCOMES


def _numeric(table: pd.DataFrame, axis: str) -> bool:
    return axis in table and pd.api.types.is_numeric_dtype(table[axis])


def _table_html(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="meta"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def build_sweep_report(sweep, x: str | None = None, y: str | None = None) -> Page:
    table = sweep.table
    status = table["status"].value_counts().to_dict()
    disk = sweep.manifest.get("disk_bytes")
    intro = _table_html(
        [
            ["sweep", str(sweep.path)],
            ["runs", ", ".join(f"{k} {v}" for k, v in status.items())],
            ["axes", ", ".join(sweep.axes) or "none"],
            ["disk use", f"{disk / 1e6:.1f} MB" if disk else "not measured"],
        ],
        ["", ""],
    )
    page = Page(f"interp sweep report: {sweep.path.name}", intro=intro)
    if "outcome" in table:
        counts = table["outcome"].value_counts()
        page.add(
            _table_html([[o, str(counts.get(o, 0))] for o in OUTCOMES], ["outcome", "runs"]),
            title="Outcomes",
            note=(
                "confusion: training never fitted (train ≥ 99 %); memorization: fitted, never "
                "generalized; grokking: generalized at least "
                f"{GROKKING_DELAY:g}× the fitting time after fitting; comprehension: "
                "generalized sooner. All within each run's budget."
            ),
        )
    varied = sweep.varied
    x = x or (varied[0] if varied else None)
    y = y or next((a for a in varied if a != x), None)
    if x and y and "outcome" in table:
        page.add(plot_phase_diagram(sweep, x, y), title="Phase diagram")
    event = "generalized" if "generalized_step" in table else None
    for axis in varied:
        if not event or not _numeric(table, axis) or not len(sweep.done()):
            continue
        fits = sweep.fits(axis, event)  # once, for the figure and the table
        fig = plot_events(sweep, axis, event, fits=fits)
        page.add(fig, title=f"Generalization step against {axis}")
        if fits:
            rows = [
                [
                    ", ".join(f"{k}={v}" for k, v in f.group.items()) or "all runs",
                    f"{f.fit.params['a']:.4g}",
                    "{:.3f} [{:.3f}, {:.3f}]".format(f.fit.params["b"], *f.fit.interval["b"]),
                    str(f.fit.n),
                    str(f.excluded_censored),
                ]
                for f in fits
            ]
            page.add(
                _table_html(rows, ["runs", "a", "b [95% CI]", "points", "censored, left out"]),
                title=f"Power-law fits: {event} step = a·{axis}^b",
            )
    for x in sweep.SCALING_X:
        for group in sweep.scaling_groups(x):
            _scaling_section(page, sweep, x, group)
    for axis in varied:
        if _numeric(table, axis) and "final_test_acc" in table and len(sweep.done()):
            page.add(
                plot_metric(sweep, axis, "final_test_acc"),
                title=f"Final test accuracy against {axis}",
            )
    failed = table[table["status"] == "failed"]
    if len(failed):
        page.add(
            _table_html(failed[["run", "error"]].astype(str).values.tolist(), ["run", "error"]),
            title="Failed runs",
        )
    return page


def _scaling_section(page: Page, sweep, x: str, group: dict) -> None:
    """A scaling fit against `x` (c fixed at the irreducible term, and free): the figure and a
    table of exponents, intervals over seeds, MSE ratios and excluded points."""
    select = sweep.tuning_axis(x)
    where = ", ".join(f"{k}={v}" for k, v in group.items())
    if select:
        where += f" (best {select} per x on the validation loss)"
    try:
        fits = [sweep.scaling(x, fixed=fixed, select=select, **group) for fixed in (True, False)]
    except (ValueError, RuntimeError) as exc:
        page.add(f"<p>No fit: {exc}</p>", title=f"Scaling against {x} {where}")
        return
    page.add(plot_scaling(sweep, x, fits, select, **group), title=f"Scaling against {x} {where}")
    rows = [
        [
            "c = H (fixed)" if f.irreducible_fixed else "c free",
            "{:.3f} [{:.3f}, {:.3f}]".format(f.alpha, *f.alpha_interval),
            f"{f.irreducible:.4f}",
            f"{f.mse_ratio:.1f}",
            str(f.n_points),
            "; ".join(f"{e['x']:.3g} (seed {e['seed']})" for e in f.excluded) or "none",
        ]
        for f in fits
    ]
    page.add(
        _table_html(
            rows,
            [
                "fit",
                "α [95% CI, bootstrap over seeds]",
                "c",
                "MSE exp / power",
                "x values",
                "excluded",
            ],
        ),
        title=f"Scaling fits: L = A·x^(−α) + c against {x} {where}",
        note=(
            "Fitted to the mean loss over seeds at each x with a Huber loss: on log(L − c) with "
            "c fixed (the excess, where a power law is a line), on log L with c free. "
            "Excluded: runs that had not left their initial plateau (final excess above 10 % of "
            "their initial excess; interp.sweep.scaling)."
        ),
    )


def write_sweep_report(
    sweep, path: Path | None = None, x: str | None = None, y: str | None = None
) -> Path:
    """The sweep's page, written atomically to `path` (default: `sweep_report.html` in the
    sweep folder)."""
    from interp.runs import atomic_write_bytes
    from interp.sweep.study import REPORT_FILE

    path = Path(path) if path else sweep.path / REPORT_FILE

    atomic_write_bytes(path, build_sweep_report(sweep, x, y).render().encode("utf-8"))
    return path
