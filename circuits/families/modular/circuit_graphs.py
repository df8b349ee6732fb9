"""The circuit graph of each checkpoint of a run (`circuits.analyses.circuit_graph.circuit_graph`):
the run's
constants (`GraphSetup`: the task's valid examples, the final checkpoint's neuron groups,
the key-frequency answer directions) and one graph per checkpoint, as the analysis' pass
computes it (`checkpoint_graph`) or, in a notebook, for chosen checkpoints of a run."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.analyses.activations import FinalActs, final_position_activations
from circuits.analyses.circuit_graph import CircuitGraph, circuit_graph, neuron_groups


@dataclass(frozen=True)
class GraphSetup:
    """What the graphs of every checkpoint of a run share: the examples, the neuron groups
    (fixed over the run, so the slider shows the same nodes growing and fading) and the
    key-frequency answer directions."""

    valid: Int[Tensor, " example"]  # examples with an answer (label ≥ 0), indices into the task's
    labels: Int[Tensor, " example"]  # their answers
    train: Int[Tensor, " index"]  # every trained-on example, as positions in `valid`
    neuron_frequency: (
        Int[Tensor, " d_mlp"] | None
    )  # the final checkpoint's clusters (None: one group)
    directions: (
        Float[Tensor, "direction example"] | None
    )  # over `valid`; None without key frequencies
    is_all_valid: bool = True


def graph_setup(
    task,
    neuron_frequency: Tensor | None = None,
    key_frequencies: list[int] | tuple[int, ...] = (),
    answer_group=None,
) -> GraphSetup:
    """The run's constants for `checkpoint_graph`; `answer_group`
    (`circuits.families.modular.fourier.answer_group`)
    and `key_frequencies` give the generalization shares (modular tasks only)."""
    from circuits.families.modular import fourier

    is_valid = task.labels >= 0
    valid = torch.nonzero(is_valid).squeeze(1)
    labels = task.labels[valid]
    position_of = torch.full((task.n_examples,), -1, dtype=torch.long)
    position_of[valid] = torch.arange(valid.numel())
    train = position_of[task.train_index]
    train = train[train >= 0]
    directions = None
    if answer_group is not None and key_frequencies:
        directions = fourier.answer_directions(labels, answer_group, list(key_frequencies))
    return GraphSetup(
        valid=valid,
        labels=labels,
        train=train,
        neuron_frequency=neuron_frequency,
        directions=directions,
        is_all_valid=bool(is_valid.all()),
    )


def checkpoint_graph(model, acts: FinalActs, setup: GraphSetup, step: int) -> CircuitGraph:
    """The graph of one checkpoint from its activations over all of the task's examples
    (gathered with `attribution=True`)."""
    if not setup.is_all_valid:
        acts = acts.select(setup.valid)
    groups = neuron_groups(setup.neuron_frequency, model.cfg.d_mlp, model.cfg.n_layers - 1)
    return circuit_graph(
        model, acts, setup.labels, setup.train, groups, setup.directions, step=step
    )


def circuit_graph_series(run, analysis=None, steps: list[int] | None = None) -> list[CircuitGraph]:
    """The graph at each checkpoint of a run (default: every checkpoint of `analysis`).

    `analyze_run` computes each checkpoint's graph in its one pass over the checkpoints, so
    with an `analysis` this only selects them. Without one, each checkpoint is loaded and
    analyzed here (one model in memory), neurons in one group and no generalization shares.
    """
    if analysis is not None and any(c.graph is not None for c in analysis.checkpoints):
        wanted = set(analysis.steps if steps is None else steps)
        return [c.graph for c in analysis.checkpoints if c.graph is not None and c.step in wanted]
    setup = graph_setup(run.task)
    tokens = run.task.tokens
    return [
        checkpoint_graph(model, final_position_activations(model, tokens), setup, step)
        for step, model in run.iter_models(list(run.steps if steps is None else steps))
    ]
