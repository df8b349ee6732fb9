"""Visualizations: circuit-graph maths on a hand-built Fourier model, slider figures, the offline
report (one copy of each library, no CDN), the CLI's --html, and graceful degradation.
(`tests/circuits/test_report_from_analysis.py`: the report's data against independent
references.)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch

from circuits.pipeline.analyze import analyze_run
from interp.runs import load_run
from tests.conftest import handbuilt_fourier_model


@pytest.fixture(scope="module")
def analysis(tiny_run):
    return analyze_run(load_run(tiny_run))


def _graph_of(model, p: int, keys: list[int]):
    from circuits.analyses.activations import final_position_activations
    from circuits.analyses.circuit_graph import circuit_graph, neuron_groups
    from circuits.families.modular import fourier
    from interp.config import task_config
    from interp.tasks import build_task

    task = build_task(task_config(p=p, train_frac=0.5, split_seed=0))
    acts = final_position_activations(model, task.tokens)
    clusters = fourier.neuron_clusters(acts.mlp_post.reshape(p, p, -1), fourier.fourier_basis(p))
    groups = neuron_groups(clusters.frequency, model.cfg.d_mlp, 0)
    directions = fourier.answer_directions(task.labels, fourier.answer_group("add", p), keys)
    return circuit_graph(model, acts, task.labels, task.splits["train"], groups, directions), groups


def test_circuit_graph_paths_add_up_and_a_fourier_circuit_is_all_generalizing():
    p, keys = 13, [2, 5]
    model = handbuilt_fourier_model(p, keys)  # every bias is zero, so the decomposition is exact
    graph, groups = _graph_of(model, p, keys)
    assert {f"L0 MLP freq {k}" for k in keys} <= set(groups)
    w = dict(zip(graph.edges, graph.weight.tolist()))
    share = dict(zip(graph.edges, graph.generalization_share.tolist()))
    # Direct edges into the unembedding sum to the model's centered correct logit.
    into_unembed = sum(
        v
        for (s, d), v in w.items()
        if d == "unembed" and "MLP" not in s or (d == "unembed" and s in groups)
    )
    assert into_unembed == pytest.approx(graph.total_logit, rel=1e-4, abs=1e-4)
    # Paths into each neuron group sum to the group's own output (no b_in share here).
    for group in groups:
        paths = sum(v for (s, d), v in w.items() if d == group)
        assert paths == pytest.approx(w[(group, "unembed")], rel=1e-4, abs=1e-4)  # float32 paths
    for k in keys:
        assert w[(f"L0 MLP freq {k}", "unembed")] > 0
        assert share[(f"L0 MLP freq {k}", "unembed")] > 0.95
    assert graph.node_share()["unembed"] > 0.95


def test_slider_figures_restyle_one_checkpoint_per_step(analysis):
    from circuits.families.modular import figures as F
    from circuits.families.modular.circuit_graphs import circuit_graph_series
    from circuits.viz import attribution as A
    from circuits.viz.circuit_graph import plot_circuit_graph

    run = load_run(analysis.run_dir)
    figs = [
        F.plot_embedding_spectrum(analysis),
        F.plot_neuron_clusters(analysis),
        A.plot_attribution(analysis),
        plot_circuit_graph(circuit_graph_series(run, analysis)),
    ]
    for i, fig in enumerate(figs):
        steps = fig.layout.sliders[0].steps
        assert [int(s.label) for s in steps] == analysis.steps
        first, last = steps[0].args[0], steps[-1].args[0]
        if i != 1:  # (the tiny run has no neuron cluster at any step)
            assert first != last  # the checkpoints differ, so does what the slider draws
        assert "step" in fig.layout.title.text and (
            fig.layout.xaxis.title.text or fig.layout.xaxis.visible is False
        )
    spectrum = figs[0]
    assert spectrum.data[0].x[0] == "k=1" or spectrum.data[0].x[0].startswith("k=1 ")


def test_pick_steps_keeps_ends_and_phase_boundaries():
    from circuits.viz.figures import pick_steps

    steps = list(range(0, 10_001, 10))
    chosen = pick_steps(steps, 50, keep=[1234 - 4, None])
    assert len(chosen) <= 52 and chosen[0] == 0 and chosen[-1] == 10_000 and 1230 in chosen


def test_timeline_marks_phases_and_names_every_measure(analysis):
    from circuits.viz.figures import plot_timeline

    fig = plot_timeline(analysis)
    names = {t.name for t in fig.data}
    for name in (
        "train loss",
        "test loss",
        "circuit score (train only)",
        "sum of squared weights",
        "restricted loss (key freqs only, test)",
        "Gini of W_E Fourier norms",
    ):
        assert name in names
    assert all(t.hovertemplate for t in fig.data)


def test_logit_lens_and_causal_tracing_read_typed_entity_results():
    from types import SimpleNamespace

    from circuits.families.entity.analysis import TracingResult
    from circuits.families.entity.figures import plot_causal_tracing, plot_logit_lens
    from probes.logit_lens import LogitLensResult

    def checkpoint(step):
        mrr = torch.tensor([[(step + layer) / 10 for layer in range(3)] for _ in range(2)])
        lens = LogitLensResult(
            ("bridge", "answer"), torch.zeros(2, 3, 1, dtype=torch.long), mrr, (1, 2)
        )
        tracing = (TracingResult("head", torch.tensor([[0.1 * layer] * 3 for layer in range(3)])),)
        return SimpleNamespace(step=step, lens=lens, tracing=tracing)

    result = SimpleNamespace(checkpoints=[checkpoint(0), checkpoint(5)])
    lens = plot_logit_lens(result, ("h", "r1", "r2 (last)"))
    assert len(lens.layout.sliders[0].steps) == 2
    assert lens.data[0].x == ("bridge @ r1", "answer @ r2 (last)") and len(lens.data[0].z) == 3
    # layer 2 of the last checkpoint: (5 + 2) / 10 for both targets
    assert list(lens.data[0].z[2]) == pytest.approx([0.7, 0.7])
    assert plot_causal_tracing(result).data[0].x == ("first", "mid", "last")
    assert (
        plot_logit_lens(SimpleNamespace(checkpoints=[SimpleNamespace(step=0, lens=None)])) is None
    )


def test_report_is_offline_with_each_library_once(analysis, tmp_path):
    from circuits.viz.report import write_report

    report = write_report(analysis, tmp_path / "report.html")
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("var CircuitsVis=") == 1
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]+src=", page)
    # Nothing is fetched: no script or stylesheet by URL, no ES-module import from a CDN
    # (plotly.js itself mentions cdn.plot.ly only as the default topojson URL of geo maps).
    assert not re.search(r"<link[^>]+href=", page) and 'from "https://' not in page
    assert "sourceMappingURL=iife" not in page
    for title in (
        "Transition timeline",
        "Circuit graph",
        "Neuron-frequency clusters",
        "Direct logit attribution",
        "Attention patterns (circuitsvis)",
        "Fourier spectrum of the embedding and W_L",
    ):
        assert title in report.figures


def test_report_degrades_when_parts_are_missing(tiny_run, tmp_path):
    from circuits.viz.report import build_report

    partial = analyze_run(load_run(tiny_run), ("attention",))
    report = build_report(partial)
    omitted = dict(report.omitted)
    assert "Fourier views" in omitted and "Direct logit attribution" in omitted
    assert "Transition timeline" in report.figures and "Circuit graph" in report.figures
    # Every view reads only the analysis: a run folder that is gone changes nothing.
    gone = build_report(partial.__class__(**{**partial.__dict__, "run_dir": tmp_path / "missing"}))
    assert gone.figures == report.figures and gone.omitted == report.omitted
    assert "Attention patterns (circuitsvis)" in gone.figures


def test_cli_writes_the_report_by_default_and_to_html(tiny_run, tmp_path, capsys):
    from interp.cli import main

    target = tmp_path / "out" / "r.html"
    assert main(["analyze", str(tiny_run), "--html", str(target), "--no-figures"]) == 0
    assert "report:" in capsys.readouterr().out
    assert target.read_bytes() == (tiny_run / "analysis" / "report.html").read_bytes()


def test_notebook_views_send_the_circuitsvis_bundle_once(tiny_run):
    from circuits.viz.attention import attention_patterns
    from circuits.viz.page import resend_bundle

    run = load_run(tiny_run)
    model = run.model_at(run.steps[-1])
    resend_bundle()
    first = attention_patterns(model, run.task.tokens[:1])._repr_html_()
    second = attention_patterns(model, run.task.tokens[:4])._repr_html_()
    assert "var CircuitsVis=" in first and "var CircuitsVis=" not in second
    assert "CircuitsVis.render" in second and "AttentionHeads" in second


def test_import_interp_stays_light():
    code = (
        "import sys, interp; assert 'torch' not in sys.modules; "
        "assert callable(interp.load_run); print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr
