"""The report is built from the analysis alone.

Each checkpoint is loaded once per `interp analyze`; the circuit graph and the circuitsvis
attention patterns are computed in the analysis' one pass and must equal independent
references: the graph from its definition (`circuits.analyses.circuit_graph`'s docstring) with
every path's
[example, d_vocab_out] logit table built explicitly in float64 (1 layer without norm; 2
layers with LayerNorm and GELU), the patterns from `run_with_cache` over every query
position. Figure data is computed only where a slider can show it
(`circuits.pipeline.figure_steps`).
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch

from circuits.analyses.activations import final_position_activations
from circuits.analyses.attention import mean_attention_pattern, pattern_sample
from circuits.families.modular import fourier
from circuits.families.modular.analysis import analyze_model
from circuits.pipeline.analyze import analyze_run
from circuits.pipeline.files import write_analysis
from interp.runs import Run, load_run
from interp.training import train
from tests.conftest import tiny_config
from tests.families.entity.test_entity_tasks import tiny_entity_run, tiny_task

# -- an independent reference of the circuit graph ------------------------------------------------


def _rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    return ((x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True) + eps).sqrt()


@torch.no_grad()
def reference_graph(model, acts, labels, train_index, groups, directions) -> dict:
    """{(source, target): (weight, share)} of every edge, from the definitions, in float64."""
    f64 = {k: v.double() for k, v in vars(acts).items() if v is not None}
    n_layers, last, eps = model.cfg.n_layers, model.cfg.n_layers - 1, model.cfg.eps
    is_ln = model.cfg.normalization_type is not None
    y = labels[train_index]
    W_U = model.W_U.double()
    upstream = {"embed": f64["embed"]}
    for layer in range(n_layers):
        W_O = model.blocks[layer].attn.W_O.double()
        for h in range(W_O.shape[0]):
            upstream[f"L{layer}H{h}"] = f64["z"][layer][:, h] @ W_O[h]
        if layer < last:
            upstream[f"L{layer} MLP"] = f64["mlp_out"][layer]
    final_scale = _rms(f64["resid_final"], eps) if is_ln else None

    def logits_of(vec):  # through the final LayerNorm frozen at the model's own scale, no biases
        if is_ln:
            vec = (vec - vec.mean(-1, keepdim=True)) / final_scale * model.ln_final.w.double()
        return vec @ W_U

    def edge(logits):
        centered = logits - logits.mean(-1, keepdim=True)
        weight = float(centered[train_index, y].mean())
        if directions is None or directions.shape[0] == 0 or abs(weight) < 1e-12:
            return weight, math.nan
        D = directions.double()
        projected = D.T @ (D @ centered)  # the key-frequency part of every logit
        return weight, min(max(float(projected[train_index, y].mean()) / weight, 0.0), 1.0)

    out = {(name, "unembed"): edge(logits_of(vec)) for name, vec in upstream.items()}
    mlp = model.blocks[last].mlp
    W_in, W_out = mlp.W_in.double(), mlp.W_out.double()
    if is_ln:
        mid_scale = _rms(sum(upstream.values()), eps)
        ln2 = model.blocks[last].ln2.w.double()
        per_input = {
            n: ((v - v.mean(-1, keepdim=True)) / mid_scale * ln2) @ W_in
            for n, v in upstream.items()
        }
    else:
        per_input = {n: v @ W_in for n, v in upstream.items()}
    pre = sum(per_input.values()) + mlp.b_in.double()
    ratio = torch.where(pre.abs() > 1e-6, f64["mlp_post"] / pre, torch.zeros_like(pre))
    heads = [n for n in upstream if "H" in n]
    total = {h: out[(h, "unembed")][0] for h in heads}
    general = {
        h: total[h] * (0.0 if math.isnan(out[(h, "unembed")][1]) else out[(h, "unembed")][1])
        for h in heads
    }
    for group, index in groups.items():
        out[(group, "unembed")] = edge(logits_of(f64["mlp_post"][:, index] @ W_out[index]))
        for name, part in per_input.items():
            out[(name, group)] = weight, share = edge(
                logits_of((ratio * part)[:, index] @ W_out[index])
            )
            if name in total:
                total[name] += weight
                general[name] += weight * (0.0 if math.isnan(share) else share)
    for h in heads:
        out[("embed", h)] = (
            total[h],
            min(max(general[h] / total[h], 0.0), 1.0) if abs(total[h]) > 1e-12 else math.nan,
        )
    return out


def assert_graph_matches(graph, reference: dict, scale: float) -> None:
    assert set(graph.edges) == set(reference)
    for (src, dst), weight, share in zip(
        graph.edges, graph.weight.tolist(), graph.generalization_share.tolist()
    ):
        ref_weight, ref_share = reference[(src, dst)]
        assert weight == pytest.approx(ref_weight, abs=1e-5 * scale), (graph.step, src, dst)
        assert math.isnan(share) == math.isnan(ref_share), (graph.step, src, dst)
        if not math.isnan(share):
            assert share == pytest.approx(ref_share, abs=1e-4), (graph.step, src, dst)


def _groups(neuron_frequency, d_mlp: int, layer: int) -> dict:
    """The neuron groups the graph must use, written out: one per cluster frequency plus the
    rest."""
    if neuron_frequency is None:
        return {f"L{layer} MLP": torch.arange(d_mlp)}
    groups = {
        f"L{layer} MLP freq {k}": torch.nonzero(neuron_frequency == k).squeeze(1)
        for k in sorted(set(neuron_frequency.tolist()) - {-1})
    }
    rest = torch.nonzero(neuron_frequency < 1).squeeze(1)
    return groups | ({f"L{layer} MLP unclustered": rest} if len(rest) else {})


def check_modular_graphs(
    run: Run, checkpoints, parts, key_frequencies: list[int], own_clusters: bool = False
) -> None:
    """Each checkpoint's graph equals the reference, with the final checkpoint's clusters
    (`own_clusters`: the checkpoint's own) when the fourier part ran, and the key-frequency
    directions. The reference reads the analysis' own activations
    (`tests/circuits/test_fast_paths.py`
    checks them against run_with_cache): where a neuron's pre-activation without b_O is near 0,
    the split amplifies float32 rounding, and the run_with_cache activations round differently."""
    p, task = run.config.task.p, run.task
    group = fourier.answer_group(run.config.task.operation, p)
    directions = fourier.answer_directions(task.labels, group, key_frequencies)

    def groups_of(model):
        acts = final_position_activations(model, task.tokens)
        clusters = fourier.neuron_clusters(
            acts.mlp_post.reshape(p, p, -1), fourier.fourier_basis(p)
        )
        return _groups(
            clusters.frequency if "fourier" in parts else None,
            model.cfg.d_mlp,
            model.cfg.n_layers - 1,
        )

    final_groups = groups_of(run.model_at(run.steps[-1]))
    scale = max(float(c.graph.weight.abs().max()) for c in checkpoints)
    for c in checkpoints:
        model = run.model_at(c.step)
        acts = final_position_activations(model, task.tokens)
        groups = groups_of(model) if own_clusters else final_groups
        assert_graph_matches(
            c.graph,
            reference_graph(model, acts, task.labels, task.train_index, groups, directions),
            scale,
        )
        centered = acts.logits.double() - acts.logits.double().mean(-1, keepdim=True)
        assert c.graph.total_logit == pytest.approx(
            float(centered[task.train_index, task.labels[task.train_index]].mean()), abs=1e-5
        )


# -- the tests ------------------------------------------------------------------------------------


def test_graphs_computed_in_the_pass_equal_the_reference(tiny_run):
    run = load_run(tiny_run)
    analysis = analyze_run(run)  # fourier, attention, attribution
    assert all(c.graph is not None for c in analysis.checkpoints)
    check_modular_graphs(run, analysis.checkpoints, analysis.parts, analysis.key_frequencies)
    # The tiny run has no key frequency of its own (shares NaN): give the graph two. A model
    # analyzed alone groups its neurons by its own clusters.
    keys = [2, 5]
    pinned = [
        analyze_model(run.model_at(step), run, ("fourier",), key_frequencies=keys, step=step)
        for step in run.steps
    ]
    assert (
        sum(not math.isnan(s) for c in pinned for s in c.graph.generalization_share.tolist()) > 10
    )
    check_modular_graphs(run, pinned, ("fourier",), keys, own_clusters=True)


def test_graphs_of_a_layernorm_gelu_model_equal_the_reference(tmp_path):
    """Two layers (an earlier MLP upstream of the last), LayerNorm everywhere, GELU, no fourier
    part."""
    config = tiny_config(
        model__n_layers=2, model__normalization="LN", model__act_fn="gelu", train__steps=40
    )
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    analysis = analyze_run(run, ("attention",))
    assert list(analysis.checkpoints[-1].graph.nodes)[-3:] == ["L0 MLP", "L1 MLP", "unembed"]
    check_modular_graphs(run, analysis.checkpoints, analysis.parts, analysis.key_frequencies)


def test_each_checkpoint_is_loaded_once_and_the_report_needs_no_run(
    tiny_run, tmp_path, monkeypatch
):
    """`analyze` + report: one load per checkpoint; the report is written after the run folder is
    gone."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("analysis"))
    loads: Counter = Counter()
    load = Run.load_weights_into

    def counting_load(self, model, step):
        loads[step] += 1
        return load(self, model, step)

    monkeypatch.setattr(Run, "load_weights_into", counting_load)
    run = load_run(run_dir)
    analysis = analyze_run(run, workers=2)
    write_analysis(analysis, tmp_path / "first")
    assert loads == Counter({step: 1 for step in run.steps})

    shutil.rmtree(run_dir)
    info = write_analysis(analysis, tmp_path / "second")
    page = (tmp_path / "second" / "report.html").read_text(encoding="utf-8")
    assert loads == Counter({step: 1 for step in run.steps})
    assert (
        info["figures"] and "Circuit graph" in page and "Attention patterns (circuitsvis)" in page
    )
    assert "Views not in this report" not in page
    assert page == (tmp_path / "first" / "report.html").read_text(encoding="utf-8").replace(
        *_ids(tmp_path / "first", page)
    )


def _ids(first_dir, second_page: str) -> tuple[str, str]:
    """The two pages differ only in the random element ids of the circuitsvis view."""
    import re

    first = (first_dir / "report.html").read_text(encoding="utf-8")
    a, b = (re.search(r"attention-[0-9a-f]{10}", text).group(0) for text in (first, second_page))
    return a, b


def test_attention_patterns_equal_run_with_cache_over_every_query(tiny_run):
    run = load_run(tiny_run)
    analysis = analyze_run(run, ("attention",))
    tokens = pattern_sample(run.task.tokens)
    assert analysis.pattern_examples == len(tokens) == run.task.n_examples  # p² = 121 < 1024
    assert analysis.position_labels == ("a", "b", "=")
    for c in analysis.checkpoints:
        model = run.model_at(c.step)
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
        expected = (
            cache["blocks.0.attn.hook_pattern"].double().mean(0)[None].float()
        )  # [layer, head, q, k]
        torch.testing.assert_close(c.attention_pattern, expected, rtol=1e-5, atol=1e-6)
        assert bool((c.attention_pattern.triu(1) == 0).all())  # causal: nothing above the diagonal


def test_the_early_stop_leaves_no_hook_behind():
    """`mean_attention_pattern` stops the forward by raising in a hook; the model is unchanged
    after."""
    from interp.model import build_model

    config = tiny_config(model__n_layers=2, model__normalization="LN")
    model = build_model(
        config.model,
        d_vocab=config.task.d_vocab,
        d_vocab_out=config.task.d_vocab_out,
        n_ctx=config.task.n_ctx,
    )
    tokens = torch.randint(0, config.task.p, (50, 3))
    before = model(tokens)
    pattern = mean_attention_pattern(model, tokens, batch_size=16)  # several batches
    _, cache = model.run_with_cache(tokens)
    for layer in range(2):
        torch.testing.assert_close(
            pattern[layer], cache[f"blocks.{layer}.attn.hook_pattern"].mean(0), rtol=1e-5, atol=1e-6
        )
    torch.testing.assert_close(model(tokens), before, rtol=0, atol=0)
    assert not any(
        hp.has_hooks() if hasattr(hp, "has_hooks") else hp._forward_hooks
        for hp in model.hook_dict.values()
    )


def test_without_figures_the_report_says_what_is_missing(tiny_run):
    from circuits.viz.report import build_report

    analysis = analyze_run(load_run(tiny_run), ("fourier",), figures=False)
    assert all(c.graph is None and c.attention_pattern is None for c in analysis.checkpoints)
    omitted = dict(build_report(analysis).omitted)
    assert "Circuit graph" in omitted and "Attention patterns (circuitsvis)" in omitted
    with_figures = analyze_run(load_run(tiny_run), ("fourier",))
    for a, b in zip(
        analysis.rows, with_figures.rows, strict=True
    ):  # the table does not depend on it
        assert a.keys() == b.keys()
        for key, value in a.items():
            assert b[key] == (
                pytest.approx(value, rel=1e-5, abs=1e-7) if isinstance(value, float) else value
            ), key


def test_entity_runs_get_patterns_from_the_pass_and_say_why_there_is_no_graph(tmp_path):
    config = tiny_entity_run(tiny_task("two_hop"))
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    analysis = analyze_run(run, ("logit_lens",), workers=2)
    assert analysis.position_labels == ("h", "r1", "r2 (last)")  # the family's names
    tokens = pattern_sample(run.task.tokens)
    assert analysis.pattern_examples == len(tokens)
    for c in analysis.checkpoints:
        assert getattr(c, "graph", None) is None
        _, cache = run.model_at(c.step).run_with_cache(
            tokens, names_filter=lambda n: n.endswith("hook_pattern")
        )
        expected = torch.stack(
            [cache[f"blocks.{i}.attn.hook_pattern"].double().mean(0) for i in range(2)]
        ).float()
        torch.testing.assert_close(c.attention_pattern, expected, rtol=1e-5, atol=1e-6)
    info = write_analysis(analysis)
    page = Path(info["figures"]).read_text(encoding="utf-8")
    assert "Attention patterns (circuitsvis)" in page and "Logit lens" in page
    assert "Circuit graph" not in page and "<b>Discovered circuit</b>: circuit discovery" in page


# -- figure data only where a slider can show it ---------------------------------------------------


def _rows(rng, steps):
    """Accuracy curves with first crossings at random steps (and dips, and early test gains)."""
    memorized, half, full = sorted(rng.sample(range(len(steps)), 3))
    rows = {}
    for i, step in enumerate(steps):
        train_acc = 1.0 if i >= memorized and rng.random() > 0.1 else rng.uniform(0.2, 0.98)
        test_acc = 1.0 if i >= full else 0.7 if i >= half else rng.choice([0.1, 0.3, 0.6])
        rows[step] = {"step": step, "train_acc": train_acc, "test_acc": test_acc}
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_figure_steps_cover_every_step_a_slider_can_show(seed):
    """Two workers finishing checkpoints in the order their times give (one much slower for some
    seeds): every step of the final pick gets figure data, and not many more."""
    import random

    from circuits.families.modular.family import FAMILY as MODULAR
    from circuits.pipeline.figure_steps import MAX_FIGURE_STEPS, SliderSteps, pick_steps

    rng = random.Random(seed)
    steps = sorted(rng.sample(range(10_000), rng.choice([25, 120, 400])))
    rows = _rows(rng, steps)
    skipped = set(rng.sample(steps[1:-1], 2)) if seed % 3 == 0 else set()
    slow = 3.0 if seed % 2 == 1 else 1.0  # the second worker's time per checkpoint
    figure_steps = SliderSteps(steps, MODULAR.milestones)
    wanted = {steps[-1]} if figure_steps.wants(steps[-1], rows[steps[-1]], always=True) else set()
    finished = []  # (time, step): each worker analyzes its round-robin shard in order
    for worker, speed in enumerate([1.0, slow]):
        clock = 0.0
        for step in steps[:-1][worker::2]:
            clock += speed * rng.uniform(0.7, 1.3)
            finished.append((clock, step))
    for _, step in sorted(finished):
        if step in skipped:
            figure_steps.skipped(step)
        elif figure_steps.wants(step, rows[step]):
            wanted.add(step)
    loadable = [s for s in steps if s not in skipped]
    boundaries = set(MODULAR.phases([rows[s] for s in loadable]).boundaries())
    assert boundaries | {loadable[0], loadable[-1]} <= wanted
    if not skipped:  # (a skipped checkpoint shifts the evenly spaced grid)
        assert set(pick_steps(loadable, MAX_FIGURE_STEPS, list(boundaries))) <= wanted
    if len(steps) == 400 and slow == 1.0:
        assert len(wanted) <= len(figure_steps.grid) + 10 < len(steps) / 2


def test_a_grokking_run_needs_figure_data_at_few_checkpoints():
    """The shape of the 40k-step mod-add run (422 checkpoints, memorized at 4 %, test accuracy
    0.5 and 0.99 at 46 % and 49 %): once a boundary is fixed, fewer grids remain possible."""
    from circuits.families.modular.family import FAMILY as MODULAR
    from circuits.pipeline.figure_steps import SliderSteps

    steps = list(range(0, 42_200, 100))
    rows = [
        {
            "step": s,
            "train_acc": 1.0 if i >= 17 else 0.5,
            "test_acc": 1.0 if i >= 207 else 0.6 if i >= 195 else 0.1,
        }
        for i, s in enumerate(steps)
    ]
    figure_steps = SliderSteps(steps, MODULAR.milestones)
    wanted = [r["step"] for r in rows if figure_steps.wants(r["step"], r)]
    assert {steps[17], steps[195], steps[207]} <= set(wanted)
    assert len(wanted) < 80 < 0.65 * len(figure_steps.grid)


def test_figure_data_is_computed_only_where_the_report_shows_it(tmp_path):
    """A 121-checkpoint run: the report's graph slider shows the steps `pick_steps` picks, and
    only checkpoints a slider could show got a graph and an attention pattern."""
    import re

    from circuits.pipeline.figure_steps import MAX_FIGURE_STEPS, pick_steps
    from circuits.viz.figures import phase_steps
    from circuits.viz.report import build_report

    config = tiny_config(
        train__steps=240,
        train__lr=3e-2,
        train__ckpt_every=2,
        train__ckpt_log_until=0,
        task__train_frac=0.8,
    )
    train(config, tmp_path / "run", progress=False)
    analysis = analyze_run(load_run(tmp_path / "run"), workers=2)
    assert analysis.phases.milestone("memorized") is not None
    shown = pick_steps(analysis.steps, MAX_FIGURE_STEPS, phase_steps(analysis))
    with_graph = [c.step for c in analysis.checkpoints if c.graph is not None]
    assert set(shown) <= set(with_graph) and len(with_graph) < len(analysis.steps) == 121
    assert with_graph == [c.step for c in analysis.checkpoints if c.attention_pattern is not None]
    report = build_report(analysis)
    graph_html = next(s.html for s in report.page.sections if s.title == "Circuit graph")
    attention_html = next(
        s.html for s in report.page.sections if s.title == "Attention patterns (circuitsvis)"
    )
    assert [int(x) for x in re.findall(r'"label":"(\d+)"', graph_html)] == shown
    assert re.search(r"var steps = \[([\d,]+)\]", attention_html).group(1) == ",".join(
        map(str, shown)
    )
