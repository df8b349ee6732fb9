"""The modular family's analysis (`circuits.families.modular.family`): every checkpoint's accuracy,
circuit score, Fourier quantities, attention and attribution, and its figure data, from one
forward pass.

Key frequencies follow Nanda et al.: the frequencies of the neuron clusters of the final
checkpoint, which is therefore analyzed first; every checkpoint's restricted and excluded
losses use that one set, and its circuit graph groups neurons by those clusters.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from circuits.analyses.activations import FinalActs, final_position_activations
from circuits.analyses.attention import (
    attention_columns,
    attention_summary,
    mean_attention_pattern,
    pattern_sample,
)
from circuits.analyses.attribution import attribution_columns, direct_logit_attribution
from circuits.families.modular import fourier
from circuits.families.modular.circuit_graphs import GraphSetup, checkpoint_graph, graph_setup
from circuits.families.modular.circuit_score import circuit_score
from circuits.pipeline.analyze import (
    CheckpointAnalysis,
    RunAnalysis,
    _label,
    _map_checkpoints,
    _require,
    _run_facts,
    default_parts,
)
from circuits.pipeline.figure_steps import FigureSteps
from interp.metrics import per_example_cross_entropy
from interp.registry import family_of
from interp.runs import Run


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
        self.splits = {
            name: self.task.splits[name]
            for name in ("train", "val", "test")
            if name in self.task.splits
        }
        self.position_names = list(family_of(run.config).position_names)
        self.directions: Tensor | None = None
        self.figures = figures
        #: decides which of `steps` get figure data (None: every checkpoint, e.g. a single model)
        self.figure_steps = (
            FigureSteps(steps, family_of(run.config).milestones)
            if figures and steps is not None
            else None
        )
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
    """The one forward pass; the circuit graph reads what attribution reads (z, mlp_out,
    resid_final)."""
    for_graph = ctx.figures and (ctx.figure_steps is None or step in ctx.figure_steps.grid)
    return final_position_activations(
        model, ctx.task.tokens, attribution=for_graph or "attribution" in parts
    )


@torch.inference_mode()
def analyze_checkpoint(
    model,
    step: int,
    ctx: _ModularContext,
    parts: tuple[str, ...],
    acts: FinalActs | None = None,
    always: bool = False,
) -> CheckpointAnalysis:
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
        losses = fourier.restricted_and_excluded_loss(
            logits, labels, train, ctx.test_index, ctx.directions
        )
        row["restricted_loss"] = losses.restricted_loss
        row["excluded_loss"] = losses.excluded_loss
        W_L = model.blocks[-1].mlp.W_out @ model.W_U
        spectrum = fourier.embedding_spectrum(model.W_E, W_L, ctx.basis)
        row["gini_embed"] = spectrum.gini_embed
        row["gini_unembed"] = spectrum.gini_unembed
        clusters = fourier.neuron_clusters(acts.mlp_post.reshape(ctx.p, ctx.p, -1), ctx.basis)
        row["frac_neurons_clustered"] = clusters.frac_clustered
        row["neuron_key_frequencies"] = " ".join(
            map(str, fourier.key_frequencies_from_clusters(clusters, ctx.p))
        )
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


def _analyze_final(
    model,
    step: int,
    ctx: _ModularContext,
    parts: tuple[str, ...],
    key_frequencies: list[int] | None = None,
) -> tuple[list[int], CheckpointAnalysis]:
    """The final checkpoint: its neuron clusters give the key frequencies (unless given) and the
    graph's neuron groups; then it is analyzed like the others, from the same forward pass."""
    acts = _activations(model, ctx, parts, step)
    clusters = fourier.neuron_clusters(acts.mlp_post.reshape(ctx.p, ctx.p, -1), ctx.basis)
    keys = (
        fourier.key_frequencies_from_clusters(clusters, ctx.p)
        if key_frequencies is None
        else list(key_frequencies)
    )
    if not keys and key_frequencies is None:
        # No neuron clusters (e.g. a model that only memorized): fall back to the answer-space set.
        train = ctx.train_index
        keys = circuit_score(
            acts.logits[train], ctx.task.labels[train], ctx.operation, ctx.p
        ).key_frequencies
    # Without the fourier part no checkpoint has clusters, and the graph keeps one group per MLP.
    ctx.set_key_frequencies(keys, clusters.frequency if "fourier" in parts else None)
    return keys, analyze_checkpoint(model, step, ctx, parts, acts, always=True)


def analyze_model(
    model,
    run: Run,
    parts: tuple[str, ...] | None = None,
    *,
    key_frequencies: list[int] | None = None,
    step: int = -1,
) -> CheckpointAnalysis:
    """Analyze one model on a run's task, e.g. a checkpoint edited in a notebook.

    Key frequencies default to the model's own neuron clusters (as for a run's last checkpoint).
    """
    parts = tuple(parts or default_parts(run))
    return _analyze_final(model, step, _ModularContext(run, figures=True), parts, key_frequencies)[
        1
    ]


def analyze_modular_run(
    run: Run,
    parts: tuple[str, ...],
    steps: list[int],
    *,
    workers: int,
    progress: bool,
    figures: bool = True,
) -> RunAnalysis:
    """The modular family's analysis: the last checkpoint first (its clusters give the key
    frequencies), then every checkpoint's accuracy, circuit score, parts and figure data."""
    label = _label(parts, progress)
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
        run,
        steps[: steps.index(final.step)],
        lambda: lambda model, step: analyze_checkpoint(model, step, ctx, parts),
        workers=workers,
        progress=label,
        done=1 + len(late),
        figure_steps=ctx.figure_steps,
    )
    return RunAnalysis(
        run_dir=run.path,
        parts=parts,
        checkpoints=[*results, final],
        key_frequencies=keys,
        p=ctx.p,
        kind=run.config.task.kind,
        skipped=skipped + [(str(item.path), item.reason) for item in reversed(late)],
        **_run_facts(run, [*results, final], figures, ctx.position_names),
    )
