"""The self-contained HTML report of an analyzed run.

`report_html(result)` renders one offline page (plotly.js and the circuitsvis bundle
inlined once each) with, in order: the run's settings and headline numbers, the
transition timeline, the circuit graph, the Fourier spectrum and neuron clusters, direct
logit attribution, attention patterns (circuitsvis) and attention over training, and the
logit lens when the analysis has one. A view whose ingredients are missing (an analysis
part that was not run, an analysis without figures) is left out and listed at the end
with the reason, so a partial analysis still yields a report.

Every view reads only the `RunAnalysis`: the circuit graph and the attention patterns were
computed in the analysis' one pass over the checkpoints, so no checkpoint is loaded and
no model is run here.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from circuits.steps import MAX_FIGURE_STEPS
from circuits.viz import figures as F
from circuits.viz.page import Page

#: Checkpoints shown by the circuit-graph and circuitsvis sliders; the analysis computes their
#: data only at the checkpoints such a slider may show (`circuits.steps.FigureSteps`).
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


def build_report(result, run=None, *, max_model_steps: int = MAX_MODEL_STEPS, title: str | None = None) -> Report:
    """Assemble the report of `result` (a `circuits.analyze.RunAnalysis`); of `run`, if given,
    only the config is read, for an analysis that does not carry one."""
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

    parts = set(getattr(result, "parts", ()))
    phases = entity_phases(result)
    attempt("Transition timeline", lambda: F.plot_timeline(result, phases=phases), _TIMELINE_NOTE)
    model_steps = set(F.pick_steps(result.steps, max_model_steps, F.phase_steps(result)))
    shown = [c for c in result.checkpoints if c.step in model_steps]
    graphs = [c.graph for c in shown if c.graph is not None]
    if graphs:
        from circuits.viz.graph import plot_circuit_graph

        attempt("Circuit graph", lambda: plot_circuit_graph(graphs, keep_steps=F.phase_steps(result)), _GRAPH_NOTE)
    else:
        omitted.append(("Circuit graph", _NO_FIGURES if getattr(result, "kind", "modular") == "modular" else _NO_ENTITY_GRAPH))
    if getattr(result, "kind", "modular") != "modular":
        attempt("Intermediate entity per layer", lambda: F.plot_entity_measures(result))
    if "fourier" in parts:
        attempt("Fourier spectrum of the embedding and W_L", lambda: F.plot_embedding_spectrum(result), _SPECTRUM_NOTE)
        attempt("Embedding Fourier norms over training", lambda: F.plot_embedding_norms_over_training(result))
        attempt("Neuron-frequency clusters", lambda: F.plot_neuron_clusters(result), _CLUSTER_NOTE)
    elif getattr(result, "kind", "modular") == "modular":
        omitted.append(("Fourier views", "the analysis was run without the fourier part"))
    if "attribution" in parts:
        attempt("Direct logit attribution", lambda: F.plot_attribution(result), _DLA_NOTE)
        attempt("Direct logit attribution over training", lambda: F.plot_attribution_over_training(result))
    elif getattr(result, "kind", "modular") == "modular":
        omitted.append(("Direct logit attribution", "the analysis was run without the attribution part"))
    with_patterns = [c for c in shown if c.attention_pattern is not None]
    if with_patterns:
        from circuits.viz.attention import analysis_attention_view

        attempt("Attention patterns (circuitsvis)", lambda: analysis_attention_view(result, with_patterns),
                _ATTENTION_NOTE)
    else:
        omitted.append(("Attention patterns (circuitsvis)", _NO_FIGURES))
    if "attention" in parts:
        attempt("Attention from the answer position over training", lambda: F.plot_attention_over_training(result))
    if getattr(result, "kind", "modular") != "modular":
        attempt("Logit lens", lambda: F.plot_logit_lens(result), _LENS_NOTE)
        attempt("Causal tracing", lambda: F.plot_causal_tracing(result))
    if omitted:
        items = "".join(f"<li><b>{html.escape(a)}</b>: {html.escape(b)}</li>" for a, b in omitted)
        page.add(f"<ul>{items}</ul>", title="Views not in this report")
    return report


def entity_phases(result):
    """Phases of an entity-task run from its own splits (train_inferred, test_id; ANCHORS §2:
    generalization is read on test-ID), or None to keep the analysis's phases."""
    rows = getattr(result, "rows", [])
    if getattr(result, "kind", "modular") == "modular" or not rows or "test_id_acc" not in rows[0]:
        return None
    from circuits.progress import compute_phases

    train_key = "train_inferred_acc" if "train_inferred_acc" in rows[0] else "train_acc"
    return compute_phases(rows, train_key=train_key, test_key="test_id_acc").ended_by(getattr(result, "collapses", []))


_NO_FIGURES = "computed only by an analysis with figures (`analyze_run(..., figures=True)`, the default)"
_NO_ENTITY_GRAPH = "not computed for the entity tasks (their circuit graph is being redesigned)"


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
        task = (f"{t.kind} {t.operation} mod p={t.p}, train fraction {t.train_frac}" if t.kind == "modular"
                else f"{t.kind}: " + ", ".join(f"{k} {v}" for k, v in vars(t).items() if k not in ("kind", "operation", "p", "train_frac")))
        rows += [
            ("task", task),
            ("model", f"{m.n_layers} layer(s), d_model {m.d_model}, {m.n_heads} heads × d_head {m.d_head}, "
                      f"d_mlp {m.d_mlp}, {m.act_fn}, norm {m.normalization}"),
            ("training", f"{tr.steps} steps, lr {tr.lr}, weight decay {tr.weight_decay}, "
                         f"batch {'full' if tr.batch_size == 0 else tr.batch_size}, filter {tr.grad_filter}"),
        ]
    rows.append(("checkpoints analyzed", f"{len(result.steps)} (steps {result.steps[0]}–{result.steps[-1]})"))
    rows.append(("key frequencies", ", ".join(f"k={k}" for k in result.key_frequencies) or "none found"))
    phases = (entity_phases(result) or result.phases).to_dict()
    rows.append(("phases", "; ".join(
        f"{n.replace('_', ' ')} {s['start']}–{s['end'] if s['end'] is not None else '…'}"
        for n, s in phases.items() if s["start"] is not None) or "train set not yet fitted"))
    last = result.rows[-1]
    rows.append(("final checkpoint", ", ".join(
        _value_text(result, k, last[k]) for k in ("train_acc", "test_acc", "train_loss", "test_loss", "circuit_score")
        if isinstance(last.get(k), (int, float)))))
    small = [k for k in sorted(last) if k.endswith("_acc") and k not in ("train_acc", "test_acc")
             and isinstance(last[k], float) and hasattr(result, "interval") and result.interval(k, last[k])]
    if small:
        rows.append(("small splits (95 % Wilson interval)", ", ".join(_value_text(result, k, last[k]) for k in small)))
    for event in getattr(result, "collapses", []):
        rows.append(("collapse", event.describe()))
    if getattr(result, "best", None):
        best = result.best
        rows.append(("best checkpoint", f"step {best['step']} ({best['criterion']} {best['value']:.4g}; "
                                        "selected without test data)"))
    for file, reason in getattr(result, "skipped", []):
        rows.append(("skipped checkpoint", reason))
    leads = result.leads() if hasattr(result, "leads") else {}
    if leads:
        rows.append(("first steps", ", ".join(f"{k} at {v if v is not None else '—'}" for k, v in leads.items())))
    body = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows)
    return f"<p>Run folder: <code>{html.escape(str(result.run_dir))}</code></p><table class='meta'>{body}</table>"


_TIMELINE_NOTE = (
    "Phase boundaries are computed from the metrics: memorization until train accuracy reaches 99 %, "
    "circuit formation until test accuracy reaches 50 %, cleanup until it reaches 99 %. The circuit score "
    "uses training examples only; the restricted loss keeps only the key-frequency part of the logits "
    "(test set), the excluded loss removes it (train set).")
_GRAPH_NOTE = (
    "Nodes are components; MLP neurons are grouped by the frequency cluster they belong to at the final "
    "checkpoint. Edges carry the mean contribution of a path to the correct answer's centered logit over "
    "the training examples; their colour is the share of it that lies in the key-frequency Fourier "
    "directions (blue: generalizing circuit, red: memorization). Hover the small grey dots (edges) and "
    "the nodes for values; drag the slider to move through checkpoints.")
_SPECTRUM_NOTE = ("L2 norm of the number-token embedding W_E and of the neuron-to-logit map W_L = W_out·W_U "
                  "in each Fourier frequency. A generalizing model concentrates both on a few key frequencies.")
_CLUSTER_NOTE = ("A neuron belongs to frequency k when at least 85 % of the variance of its activation over all "
                 "inputs lies in frequency k (Nanda et al. 2023).")
_DLA_NOTE = ("How much each component writes to the correct answer's logit (minus the mean logit), averaged "
             "over all inputs; the contributions add up to the model's centered correct logit.")
_ATTENTION_NOTE = ("Attention patterns per head, averaged over inputs (query position down, key position "
                   "across). Click a head's thumbnail to enlarge it; the slider picks the checkpoint.")
_LENS_NOTE = ("Each layer's residual stream read through the final norm and unembedding; the mean reciprocal "
              "rank of the target among its candidates (1 = always ranked first).")
