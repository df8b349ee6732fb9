"""Analyze every checkpoint of a run: a streamed map over checkpoints, then files.

`analyze_run(run, parts)` loads each checkpoint once, into one model object per worker
(memory stays flat in the number of checkpoints), and returns a `RunAnalysis`: one table
row per checkpoint plus the small results the figures need (Fourier norms, clusters,
attribution and, with `figures`, the circuit graph and mean attention pattern), all from
the checkpoint's one forward pass. `circuits.analysis_io.write_analysis` writes the table,
the summary and the report, which reads only the `RunAnalysis`. Nothing here prints.

Key frequencies follow Nanda et al.: the frequencies of the neuron clusters of the final
checkpoint, which is therefore analyzed first; every checkpoint's restricted and excluded
losses use that one set, and its circuit graph groups neurons by those clusters.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuits import fourier
from circuits.activations import FinalActs, final_position_activations
from circuits.analysis_io import (BASE_COLUMNS, FIGURES_FILE, SUMMARY_FILE, TABLE_FILE, dumps, load_table,  # noqa: F401
                                  summary, write_analysis, write_table)
from circuits.attention import attention_columns, attention_summary, mean_attention_pattern, pattern_sample
from circuits.attribution import attribution_columns, direct_logit_attribution
from circuits.graph import CircuitGraph, GraphSetup, checkpoint_graph, graph_setup
from circuits.progress import Phases, circuit_score, compute_phases, first_crossing
from circuits.steps import FigureSteps
from interp.collapse import CollapseEvent, detect_collapses, rule_for_splits
from interp.config import RunConfig
from interp.metrics import SMALL_SPLIT, per_example_cross_entropy, wilson_interval
from interp.runs import Run, RunError, no_checkpoints_message, read_best

MODULAR_PARTS = ("fourier", "attention", "attribution")
#: Analyses of the entity tasks (two_hop, comparison): `circuits.entity`.
ENTITY_PARTS = ("logit_lens", "patching", "probes")


def available_parts(run: Run) -> tuple[str, ...]:
    return ENTITY_PARTS if run.config.task.kind in ("two_hop", "comparison") else MODULAR_PARTS


@dataclass(frozen=True)
class CheckpointAnalysis:
    """One checkpoint: its table row and the small results its figures are drawn from."""

    step: int
    row: dict[str, Any]
    embed_freq_norms: Tensor | None = None
    unembed_freq_norms: Tensor | None = None
    neuron_frequency: Tensor | None = None
    final_attention: Tensor | None = None
    dla_names: list[str] | None = None
    dla: Tensor | None = None
    #: the circuit graph (`circuits.graph`), neurons grouped by the final checkpoint's clusters
    graph: CircuitGraph | None = None
    #: mean attention pattern over `RunAnalysis.pattern_examples` inputs (the circuitsvis view)
    attention_pattern: Float[Tensor, "layer head query_pos key_pos"] | None = None


@dataclass(frozen=True)
class RunAnalysis:
    run_dir: Path
    parts: tuple[str, ...]
    checkpoints: list[CheckpointAnalysis]
    key_frequencies: list[int]
    phases: Phases
    skipped: list[tuple[str, str]] = field(default_factory=list)
    p: int = 0
    kind: str = "modular"
    #: collapse events found in this table by the task's rule (`interp.collapse`)
    collapses: list[CollapseEvent] = field(default_factory=list)
    #: examples behind each accuracy column ({"test_acc": 8939, "test_ood_acc": 19, ...})
    split_sizes: dict[str, int] = field(default_factory=dict)
    #: the manifest's `best` checkpoint (selected on validation or training metrics), if any
    best: dict[str, Any] | None = None
    #: the run's configuration (the report's header)
    config: RunConfig | None = None
    #: the inputs averaged by each `attention_pattern` (a seeded sample), and its position labels
    pattern_examples: int = 0
    position_labels: tuple[str, ...] = ()

    def interval(self, column: str, value: float) -> tuple[float, float] | None:
        """95 % Wilson interval of an accuracy column whose split has < SMALL_SPLIT examples."""
        n = self.split_sizes.get(column)
        return wilson_interval(value, n) if n is not None and n < SMALL_SPLIT else None

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [c.row for c in self.checkpoints]

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    def leads(self) -> dict[str, int | None]:
        """First steps at which the progress measure and test accuracy reach 0.5."""
        rows = self.rows
        return {
            "circuit_score>=0.5": first_crossing(rows, "circuit_score", 0.5),
            "test_acc>=0.5": first_crossing(rows, "test_acc", 0.5),
            "test_acc>=0.99": first_crossing(rows, "test_acc", 0.99),
        }


class _ModularContext:
    """Per-run constants shared by every checkpoint: basis, data, directions, figure inputs."""

    def __init__(self, run: Run, figures: bool = False, steps: list[int] | None = None):
        cfg = run.config.task
        self.p = cfg.p
        self.operation = cfg.operation
        self.task = run.task
        self.basis = fourier.fourier_basis(cfg.p)
        self.train_index = self.task.splits["train"]
        self.test_index = self.task.splits["test"]
        # train, val (when the run has one) and test, in that order
        self.splits = {name: self.task.splits[name] for name in ("train", "val", "test") if name in self.task.splits}
        self.position_names = ["a", "b", "="]
        self.directions: Tensor | None = None
        self.figures = figures
        #: decides which of `steps` get figure data (None: every checkpoint, e.g. a single model)
        self.figure_steps = FigureSteps(steps) if figures and steps is not None else None
        self.pattern_tokens = pattern_sample(self.task.tokens)
        self.graph: GraphSetup | None = None

    def set_key_frequencies(self, keys: list[int], neuron_frequency: Tensor | None = None) -> None:
        """The key frequencies (and the final checkpoint's clusters, the graph's neuron groups)."""
        group = fourier.answer_group(self.operation, self.p)
        self.directions = fourier.answer_directions(self.task.labels, group, keys)
        self.graph = graph_setup(self.task, neuron_frequency, keys, group) if self.figures else None


def _accuracy_columns(all_logits: Tensor, ctx: _ModularContext) -> dict[str, float]:
    """Loss (float64 cross-entropy) and accuracy per split, from one pass over every example."""
    labels = ctx.task.labels
    nll, predicted = per_example_cross_entropy(all_logits, labels)
    correct = (predicted == labels).double()
    row: dict[str, float] = {}
    for name, index in ctx.splits.items():
        row[f"{name}_loss"] = float(nll[index].mean())
        row[f"{name}_acc"] = float(correct[index].mean())
    return row


def _activations(model, ctx: _ModularContext, parts: tuple[str, ...], step: int) -> FinalActs:
    """The one forward pass; the circuit graph reads what attribution reads (z, mlp_out, resid_final)."""
    for_graph = ctx.figures and (ctx.figure_steps is None or step in ctx.figure_steps.grid)
    return final_position_activations(model, ctx.task.tokens, attribution=for_graph or "attribution" in parts)


@torch.inference_mode()
def analyze_checkpoint(model, step: int, ctx: _ModularContext, parts: tuple[str, ...],
                       acts: FinalActs | None = None, always: bool = False) -> CheckpointAnalysis:
    """All requested analyses of one checkpoint from one forward pass (the model is not modified);
    the figure data too if a slider may show the checkpoint (`always`: it will)."""
    acts = _activations(model, ctx, parts, step) if acts is None else acts
    labels = ctx.task.labels
    row: dict[str, Any] = {"step": step, **_accuracy_columns(acts.logits, ctx)}
    logits = acts.logits.double()  # the score and Fourier losses below are float64: convert once
    train = ctx.train_index
    score = circuit_score(logits[train], labels[train], ctx.operation, ctx.p)
    row["circuit_score"] = score.score
    row["train_key_frequencies"] = " ".join(map(str, score.key_frequencies))
    row["sum_sq_weights"] = float(sum(p.detach().double().pow(2).sum() for p in model.parameters()))
    extras: dict[str, Any] = {}
    if "fourier" in parts:
        assert ctx.directions is not None
        losses = fourier.restricted_and_excluded_loss(logits, labels, train, ctx.test_index, ctx.directions)
        row["restricted_loss"] = losses.restricted_loss
        row["excluded_loss"] = losses.excluded_loss
        W_L = model.blocks[-1].mlp.W_out @ model.W_U
        spectrum = fourier.embedding_spectrum(model.W_E, W_L, ctx.basis)
        row["gini_embed"] = spectrum.gini_embed
        row["gini_unembed"] = spectrum.gini_unembed
        clusters = fourier.neuron_clusters(acts.mlp_post.reshape(ctx.p, ctx.p, -1), ctx.basis)
        row["frac_neurons_clustered"] = clusters.frac_clustered
        row["neuron_key_frequencies"] = " ".join(map(str, fourier.key_frequencies_from_clusters(clusters, ctx.p)))
        extras.update(
            embed_freq_norms=spectrum.embed_freq_norms.float(),
            unembed_freq_norms=spectrum.unembed_freq_norms.float(),
            neuron_frequency=clusters.frequency,
        )
    if "attention" in parts:
        summary = attention_summary(acts)
        row.update(attention_columns(summary, ctx.position_names))
        extras["final_attention"] = summary.final_attention.float()
    if "attribution" in parts:
        valid = labels >= 0
        if bool(valid.all()):
            dla = direct_logit_attribution(model, acts, labels)
        else:
            index = torch.nonzero(valid).squeeze(1)
            dla = direct_logit_attribution(model, acts.select(index), labels[index])
        row.update(attribution_columns(dla))
        row["dla/total"] = dla.total
        extras.update(dla_names=dla.names, dla=dla.mean.float())
    if ctx.figures and (ctx.figure_steps is None or ctx.figure_steps.wants(step, row, always)):
        if acts.z is None:  # a phase boundary off the evenly spaced steps: its graph needs z
            acts = final_position_activations(model, ctx.task.tokens)
        if ctx.graph is not None:
            extras["graph"] = checkpoint_graph(model, acts, ctx.graph, step)
        extras["attention_pattern"] = mean_attention_pattern(model, ctx.pattern_tokens)
    return CheckpointAnalysis(step=step, row=row, **extras)


def _analyze_final(model, step: int, ctx: _ModularContext, parts: tuple[str, ...],
                   key_frequencies: list[int] | None = None) -> tuple[list[int], CheckpointAnalysis]:
    """The final checkpoint: its neuron clusters give the key frequencies (unless given) and the
    graph's neuron groups; then it is analyzed like the others, from the same forward pass."""
    acts = _activations(model, ctx, parts, step)
    clusters = fourier.neuron_clusters(acts.mlp_post.reshape(ctx.p, ctx.p, -1), ctx.basis)
    keys = fourier.key_frequencies_from_clusters(clusters, ctx.p) if key_frequencies is None else list(key_frequencies)
    if not keys and key_frequencies is None:
        # No neuron clusters (e.g. a model that only memorized): fall back to the answer-space set.
        train = ctx.train_index
        keys = circuit_score(acts.logits[train], ctx.task.labels[train], ctx.operation, ctx.p).key_frequencies
    # Without the fourier part no checkpoint has clusters, and the graph keeps one group per MLP.
    ctx.set_key_frequencies(keys, clusters.frequency if "fourier" in parts else None)
    return keys, analyze_checkpoint(model, step, ctx, parts, acts, always=True)


def analyze_model(model, run: Run, parts: tuple[str, ...] | None = None, *,
                  key_frequencies: list[int] | None = None, step: int = -1) -> CheckpointAnalysis:
    """Analyze one model on a run's task, e.g. a checkpoint edited in a notebook.

    Key frequencies default to the model's own neuron clusters (as for a run's last checkpoint).
    """
    parts = tuple(parts or available_parts(run))
    return _analyze_final(model, step, _ModularContext(run, figures=True), parts, key_frequencies)[1]


def _map_checkpoints(
    run: Run, steps: list[int], make_analyze_one, workers: int = 1, progress: str | None = None, done: int = 0,
    figure_steps: FigureSteps | None = None,
) -> tuple[list[CheckpointAnalysis], list[tuple[str, str]]]:
    """analyze_one(model, step) over every checkpoint that loads (`Run.iter_models`); the others
    are collected as (file, reason) instead of aborting the run. `done` checkpoints were
    analyzed before (they count in the progress bar); `figure_steps` learns of the skipped.

    `make_analyze_one()` is called once per worker, in this thread (model construction is not
    thread-safe), so each worker gets its own state (e.g. a random-init baseline model).
    With `workers` > 1 the checkpoints are dealt round-robin to that many threads, each with
    its own model object and torch running one intra-op thread: torch releases the GIL inside
    its kernels, and whole checkpoints in parallel scale better than splitting each small op
    over cores. Memory stays flat: `workers` models and activation sets at any time.
    """
    from tqdm.auto import tqdm

    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(steps) + done, desc=progress, unit="ckpt", disable=progress is None, leave=False,
               dynamic_ncols=True)
    bar.update(done)

    def on_error(item) -> None:
        skipped.append((str(item.path), item.reason))
        if figure_steps is not None:
            figure_steps.skipped(item.step)
        bar.update(1)

    def counted(analyze_one):
        def run_one(model, step: int) -> CheckpointAnalysis:
            result = analyze_one(model, step)
            bar.update(1)  # tqdm serializes updates with its own lock
            return result

        return run_one

    workers = max(1, min(workers, len(steps) // 2))
    if workers == 1:
        analyze_one = counted(make_analyze_one())
        try:
            results = [analyze_one(model, step) for step, model in run.iter_models(steps, on_error=on_error)]
        finally:
            bar.close()
    else:
        jobs = [(steps[i::workers], run.new_model(), counted(make_analyze_one())) for i in range(workers)]

        def shard(job) -> list[CheckpointAnalysis]:
            shard_steps, model, analyze_one = job
            return [analyze_one(m, step) for step, m in run.iter_models(shard_steps, on_error=on_error, model=model)]

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="analyze") as pool:
                results = sorted(chain.from_iterable(pool.map(shard, jobs)), key=lambda r: r.step)
        finally:
            torch.set_num_threads(threads)
            bar.close()
        skipped.sort()
    return results, skipped


def _require(loaded: bool, run: Run, steps: list[int]) -> None:
    if not loaded:
        raise RunError(f"{run.path}: none of the {len(steps)} checkpoints could be loaded")


def default_workers() -> int:
    """Checkpoints analyzed in parallel: one per torch thread (`--threads`), i.e. per core."""
    return max(1, torch.get_num_threads())


def analyze_run(run: Run, parts: tuple[str, ...] | None = None, steps: list[int] | None = None, *,
                workers: int | None = None, progress: bool = False, figures: bool = True) -> RunAnalysis:
    """Analyze the run's complete checkpoints, each loaded once; damaged ones are skipped and reported.

    `workers` checkpoints are analyzed in parallel (default: `default_workers()`, one per
    torch thread), each worker with its own model objects. `progress` shows a bar over the
    checkpoints (done/total, rate, ETA, and which parts) on stderr. `figures` also computes
    what only the report draws (circuit graph, attention patterns); without it, no such views.
    """
    parts = tuple(parts or available_parts(run))
    unknown = set(parts) - set(available_parts(run))
    if unknown:
        from interp.config import ConfigError

        raise ConfigError(f"analysis parts {sorted(unknown)} do not apply to task kind {run.config.task.kind!r}")
    steps = list(run.steps if steps is None else steps)
    if not steps:
        raise RunError(no_checkpoints_message(run.path))
    workers = default_workers() if workers is None else workers
    label = f"analyze {'+'.join(parts)}" if progress else None
    if parts and set(parts) <= set(ENTITY_PARTS) and run.config.task.kind != "modular":
        return _analyze_entity_run(run, parts, steps, workers, label, figures)
    ctx = _ModularContext(run, figures, steps)
    # The last checkpoint that loads comes first: its clusters give the key frequencies.
    late: list = []  # the `Skipped` after it
    final: CheckpointAnalysis | None = None
    keys: list[int] = []
    for step, model in run.iter_models(list(reversed(steps)), on_error=late.append):
        keys, final = _analyze_final(model, step, ctx, parts)
        break
    _require(final is not None, run, steps)
    results, skipped = _map_checkpoints(
        run, steps[: steps.index(final.step)], lambda: lambda model, step: analyze_checkpoint(model, step, ctx, parts),
        workers=workers, progress=label, done=1 + len(late), figure_steps=ctx.figure_steps,
    )
    return RunAnalysis(
        run_dir=run.path, parts=parts, checkpoints=[*results, final], key_frequencies=keys, p=ctx.p,
        skipped=skipped + [(str(item.path), item.reason) for item in reversed(late)],
        **_run_facts(run, [*results, final], figures, ctx.position_names),
    )


def _run_facts(run: Run, results: list[CheckpointAnalysis], figures: bool, position_labels) -> dict[str, Any]:
    """Collapse events (the task's rule on this table), split sizes, the `best` pointer, the config."""
    task = run.task
    sizes = {f"{name}_acc": len(index) for name, index in task.splits.items()}
    sizes["train_acc"] = len(task.train_index)
    if "test_acc" not in sizes:  # entity tasks: the base test columns are the first held-out split
        held_out = [s for s in task.splits if s not in task.train_splits and s != "val"]
        sizes["test_acc"] = len(task.splits[held_out[0]])
    rule = rule_for_splits(task.train_splits)
    collapses = detect_collapses([r.row for r in results], rule)
    phases = compute_phases([r.row for r in results]).ended_by(collapses)
    return {"collapses": collapses, "phases": phases, "split_sizes": sizes, "best": read_best(run.path),
            "config": run.config, "pattern_examples": len(pattern_sample(task.tokens)) if figures else 0,
            "position_labels": tuple(position_labels)}


def _analyze_entity_run(run: Run, parts: tuple[str, ...], steps: list[int], workers: int,
                        progress: str | None = None, figures: bool = True) -> RunAnalysis:
    """The entity-task analyses (`circuits.entity.analyze_entity_checkpoint`) of every checkpoint,
    plus, with `figures`, its mean attention pattern. No circuit graph: the entity tasks' graph
    is being redesigned, and the modular one cost 0.6–1.6 s more per checkpoint of the presets."""
    from circuits.entity import analyze_entity_checkpoint, random_init_model

    task = run.task
    pattern_tokens = pattern_sample(task.tokens)
    figure_steps = FigureSteps(steps) if figures else None

    def make_analyze_one():
        # The probes' random-init baseline: one model per worker (hooks are per model object).
        random_model = random_init_model(run.config) if "probes" in parts else None

        def analyze_one(model, step: int) -> CheckpointAnalysis:
            row = {"step": step, **analyze_entity_checkpoint(model, task, run.config, set(parts), random_model=random_model)}
            wanted = figure_steps is not None and figure_steps.wants(step, row)
            pattern = mean_attention_pattern(model, pattern_tokens) if wanted else None
            return CheckpointAnalysis(step=step, row=row, attention_pattern=pattern)

        return analyze_one

    results, skipped = _map_checkpoints(run, steps, make_analyze_one, workers=workers, progress=progress,
                                        figure_steps=figure_steps)
    _require(bool(results), run, steps)
    return RunAnalysis(run_dir=run.path, parts=parts, checkpoints=results, key_frequencies=[], skipped=skipped,
                       kind=run.config.task.kind,
                       **_run_facts(run, results, figures, [f"pos {i}" for i in range(task.tokens.shape[1])]))
