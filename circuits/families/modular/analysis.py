"""The modular family's analysis (`circuits.families.modular.family`): every checkpoint's accuracy,
circuit score, Fourier quantities, attention and attribution, and its figure data, from one
forward pass.

Key frequencies follow Nanda et al.: the frequencies of the neuron clusters of the final
checkpoint, which is therefore analyzed first; every checkpoint's restricted and excluded
losses use that one set, and its circuit graph groups neurons by those clusters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.analyses.activations import FinalActs, final_position_activations
from circuits.analyses.attention import (
    attention_columns,
    attention_summary,
    mean_attention_pattern,
    pattern_sample,
)
from circuits.analyses.attribution import attribution_columns, direct_logit_attribution
from circuits.analyses.circuit_graph import CircuitGraph
from circuits.families.modular import fourier
from circuits.families.modular.circuit_graphs import GraphSetup, checkpoint_graph, graph_setup
from circuits.families.modular.circuit_score import circuit_score
from circuits.pipeline.analyze import (
    RunAnalysis,
    analyze_each,
    default_parts,
    require_loaded,
)
from circuits.pipeline.figure_steps import SliderSteps
from interp.metrics import per_example_cross_entropy
from interp.runs import Run


@dataclass(frozen=True)
class ModularCheckpoint:
    """One checkpoint of a modular run: its table row and the small results its figures are
    drawn from (None where the part or the slider did not ask for them)."""

    step: int
    row: dict[str, Any]
    #: Fourier-component norms of W_E and of W_L = W_out·W_U, per basis row (`fourier`)
    embed_freq_norms: Tensor | None = None
    unembed_freq_norms: Tensor | None = None
    #: each neuron's frequency cluster (-1: unclustered)
    neuron_frequency: Tensor | None = None
    #: mean attention from the answer position [layer, head, key_pos]
    final_attention: Tensor | None = None
    #: direct logit attribution of the correct answer per component, and the components' names
    dla_names: list[str] | None = None
    dla: Tensor | None = None
    #: the circuit graph, neurons grouped by the final checkpoint's clusters
    graph: CircuitGraph | None = None
    #: mean attention pattern over `RunAnalysis.pattern_examples` inputs (the circuitsvis view)
    attention_pattern: Float[Tensor, "layer head query_pos key_pos"] | None = None


@dataclass(frozen=True)
class ModularRunAnalysis(RunAnalysis):
    """A modular run's analysis: the generic one plus the run's key frequencies and p."""

    key_frequencies: list[int] = field(default_factory=list)
    p: int = 0


class ModularContext:
    """Per-run constants shared by every checkpoint: basis, data, directions, figure inputs."""

    def __init__(
        self, run: Run, family, figures: bool = False, steps: list[int] | None = None
    ):
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
        self.position_names = list(family.position_names)
        self.directions: Tensor | None = None
        self.figures = figures
        #: decides which of `steps` get figure data (None: every checkpoint, e.g. a single model)
        self.figure_steps = (
            SliderSteps(steps, family.milestones)
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


def _accuracy_columns(all_logits: Tensor, ctx: ModularContext) -> dict[str, float]:
    """Loss (float64 cross-entropy) and accuracy per split, from one pass over every example."""
    labels = ctx.task.labels
    nll, predicted = per_example_cross_entropy(all_logits, labels)
    correct = (predicted == labels).double()
    row: dict[str, float] = {}
    for name, index in ctx.splits.items():
        row[f"{name}_loss"] = float(nll[index].mean())
        row[f"{name}_acc"] = float(correct[index].mean())
    return row


def _activations(model, ctx: ModularContext, parts: tuple[str, ...], step: int) -> FinalActs:
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
    ctx: ModularContext,
    parts: tuple[str, ...],
    acts: FinalActs | None = None,
    always: bool = False,
) -> ModularCheckpoint:
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
    return ModularCheckpoint(step=step, row=row, **extras)


def _analyze_final(
    model,
    step: int,
    ctx: ModularContext,
    parts: tuple[str, ...],
    key_frequencies: list[int] | None = None,
) -> tuple[list[int], ModularCheckpoint]:
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
) -> ModularCheckpoint:
    """Analyze one model on a run's task, e.g. a checkpoint edited in a notebook.

    Key frequencies default to the model's own neuron clusters (as for a run's last checkpoint).
    """
    from interp.registry import family_of

    family = family_of(run.config)  # an entry point for notebooks: resolve the family here
    parts = tuple(parts or default_parts(family))
    ctx = ModularContext(run, family, figures=True)
    return _analyze_final(model, step, ctx, parts, key_frequencies)[1]


def analyze_modular_run(
    run: Run,
    family,
    parts: tuple[str, ...],
    steps: list[int],
    *,
    workers: int,
    progress: bool,
    figures: bool = True,
) -> RunAnalysis:
    """The modular family's analysis: the last checkpoint first (its clusters give the key
    frequencies), then every checkpoint's accuracy, circuit score, parts and figure data."""
    ctx = ModularContext(run, family, figures, steps)
    # The last checkpoint that loads comes first: its clusters give the key frequencies.
    late: list = []  # the `Skipped` after it
    final: ModularCheckpoint | None = None
    keys: list[int] = []
    for step, model in run.iter_models(list(reversed(steps)), on_error=late.append):
        keys, final = _analyze_final(model, step, ctx, parts)
        break
    require_loaded([final] if final else [], run, steps)
    return analyze_each(
        run,
        family,
        parts,
        steps[: steps.index(final.step)],
        lambda: lambda model, step: analyze_checkpoint(model, step, ctx, parts),
        workers=workers,
        progress=progress,
        slider_steps=ctx.figure_steps,
        position_labels=tuple(ctx.position_names),
        done=(final,),
        skipped=tuple((str(item.path), item.reason) for item in reversed(late)),
        result_type=ModularRunAnalysis,
        key_frequencies=keys,
        p=ctx.p,
    )
