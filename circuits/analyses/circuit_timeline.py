"""Circuits across training: circuit discovery (`circuits.analyses.discovery`) at every checkpoint.

Per checkpoint: a score per edge (the family's method: attribution with integrated
gradients, or exact patching where linearization was measured to fail), the smallest
faithful circuit (≥ 90 % of the clean − corrupt gap recovered with every other edge
ablated), its size, its faithfulness, and its overlap with the final checkpoint's circuit
(the fraction of the final circuit's edges it contains). One-layer models also get the same
over MLP neurons. The design (examples, corruption, metric) is fixed for the whole run, so
checkpoints are compared on the same inputs.

Table columns: `circuit_edges`, `circuit_faithfulness`, `circuit_overlap`, `circuit_gap`
(clean − corrupt metric), and for one-layer models `circuit_neurons`,
`circuit_neuron_faithfulness`. NaN where the gap is below `circuits.analyses.discovery.MIN_GAP`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from circuits.analyses.discovery import (
    Circuit,
    attribute,
    exact_effects,
    prepare,
    refined_scores,
    smallest_circuit,
)

#: Clean/corrupt pairs per checkpoint (the same pairs at every checkpoint).
N_EXAMPLES = 128
DESIGN_SEED = 0
NAN = float("nan")


@dataclass(frozen=True)
class CircuitCheckpoint:
    step: int
    scores: Tensor  # [edge], float32
    clean_metric: float
    corrupt_metric: float
    circuit: Circuit | None
    neuron_scores: Tensor | None = None
    neuron_circuit: Circuit | None = None

    @property
    def gap(self) -> float:
        return self.clean_metric - self.corrupt_metric

    def row(self) -> dict[str, Any]:
        row = {
            "circuit_edges": NAN if self.circuit is None else self.circuit.size,
            "circuit_faithfulness": NAN if self.circuit is None else self.circuit.faithfulness,
            "circuit_gap": self.gap,
        }
        if self.neuron_scores is not None:
            c = self.neuron_circuit
            row["circuit_neurons"] = NAN if c is None else c.size
            row["circuit_neuron_faithfulness"] = NAN if c is None else c.faithfulness
        return row


@dataclass(frozen=True)
class CircuitTimeline:
    """Every analyzed checkpoint's circuit, with what the report needs to label them."""

    edge_names: list[str]
    #: the graph's writer and reader of each edge (names, as in `circuits.analyses.edges.EdgeGraph`)
    edge_writer: list[str]
    edge_reader: list[str]
    method: str
    metric: str
    n_examples: int
    checkpoints: list[CircuitCheckpoint]

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    def final_circuit(self) -> Circuit | None:
        circuits = [c.circuit for c in self.checkpoints if c.circuit is not None]
        return circuits[-1] if circuits else None

    def overlaps(self) -> list[float]:
        """Per checkpoint, the fraction of the final circuit's edges in its circuit."""
        final = self.final_circuit()
        if final is None:
            return [NAN] * len(self.checkpoints)
        out = []
        for c in self.checkpoints:
            if c.circuit is None:
                out.append(NAN)
            else:
                out.append(float((c.circuit.keep & final.keep).sum()) / float(final.keep.sum()))
        return out

    def settles(self, column: str, within: float = 0.1) -> int | None:
        """The first step from which `column` stays within `within` (relative) of its final
        value (None without a final value)."""
        rows = self.rows()
        values = [(step, rows[step].get(column, NAN)) for step in self.steps]
        final = values[-1][1] if values else NAN
        if not final == final:  # NaN
            return None
        settled = None
        for step, value in values:
            if value == value and abs(value - final) <= within * abs(final):
                settled = step if settled is None else settled
            else:
                settled = None
        return settled

    def summary(self) -> dict[str, Any]:
        """The method, the final circuit's edges and the steps where circuit size settles."""
        final = self.final_circuit()
        last = self.checkpoints[-1]
        out: dict[str, Any] = {
            "method": self.method,
            "metric": self.metric,
            "n_examples": self.n_examples,
            "final_edges": []
            if final is None
            else [self.edge_names[i] for i in torch.nonzero(final.keep).flatten().tolist()],
            "final": last.row(),
            "edges_settle_step": self.settles("circuit_edges"),
        }
        if last.neuron_scores is not None:
            out["neurons_settle_step"] = self.settles("circuit_neurons")
        return out

    def edge_rows(self) -> list[dict[str, Any]]:
        """The edge × checkpoint map as data, one row per (checkpoint, edge): the edge's
        score as a share of the checkpoint's clean − corrupt gap (signed; NaN below
        `MIN_GAP`) and whether it is in that checkpoint's smallest faithful circuit."""
        out = []
        for c in self.checkpoints:
            share = (c.scores / c.gap).tolist() if c.circuit is not None else None
            keep = c.circuit.keep.tolist() if c.circuit is not None else None
            for i, name in enumerate(self.edge_names):
                out.append(
                    {
                        "step": c.step,
                        "edge": name,
                        "writer": self.edge_writer[i],
                        "reader": self.edge_reader[i],
                        "share_of_gap": NAN if share is None else share[i],
                        "in_circuit": "" if keep is None else int(keep[i]),
                    }
                )
        return out

    def rows(self) -> dict[int, dict[str, Any]]:
        """Table columns per step."""
        return {
            c.step: {**c.row(), "circuit_overlap": overlap}
            for c, overlap in zip(self.checkpoints, self.overlaps())
        }


def circuit_method(family) -> tuple[str, int]:
    """The family's scoring method and integrated-gradient steps."""
    return getattr(family, "circuit_method", "refined"), getattr(family, "circuit_ig_steps", 5)


def edge_scores(prep, method: str, ig_steps: int) -> Tensor:
    """Scores by `method`: "refined", "attribution" or "exact" (`circuits.analyses.discovery`)."""
    if method == "exact":
        return exact_effects(prep)
    if method == "attribution":
        return attribute(prep, ig_steps)
    return refined_scores(prep, ig_steps)


def method_name(method: str, ig_steps: int) -> str:
    return {
        "exact": "exact patching of every edge",
        "attribution": f"edge attribution, IG {ig_steps} steps",
    }.get(method, f"edge attribution (IG {ig_steps} steps), top edges re-scored by exact patching")


def circuit_checkpoint(model, step: int, design, method: str, ig_steps: int) -> CircuitCheckpoint:
    """One checkpoint's scores and circuits (see the module docstring)."""
    prep = prepare(model, design)
    scores = edge_scores(prep, method, ig_steps)
    circuit = smallest_circuit(prep, scores)
    neuron_scores = neuron_circuit = None
    if prep.neurons_apply:
        # A one-layer MLP's hidden units act linearly on the logits: attribution is exact.
        neuron_scores = attribute(prep, 1, neurons=True)
        neuron_circuit = smallest_circuit(prep, neuron_scores, neurons=True)
        neuron_scores = neuron_scores.float()
    return CircuitCheckpoint(
        step,
        scores.float(),
        prep.clean_metric,
        prep.corrupt_metric,
        circuit,
        neuron_scores,
        neuron_circuit,
    )


def analyze_circuits(
    run, family, steps: list[int], *, workers: int = 1, progress: str | None = None
) -> CircuitTimeline:
    """`circuit_checkpoint` over the run's checkpoints (damaged ones are skipped as by every
    analysis), on the clean/corrupt design of the run's `family` (`Family.patching_design`)."""
    from circuits.analyses.edges import edge_graph, supports_edges
    from circuits.pipeline.checkpoint_map import map_checkpoints
    from interp.config import ConfigError

    try:
        design = family.patching_design(run.task, N_EXAMPLES, DESIGN_SEED)
    except NotImplementedError as exc:
        raise ConfigError(f"--circuits: {exc}") from None
    method, ig_steps = circuit_method(family)
    probe = run.new_model()
    if not supports_edges(probe):
        raise ConfigError(
            "--circuits: this model's architecture (rotary, GQA, soft caps or gated MLP) is "
            "not covered by the edge graph (circuits.analyses.edges)"
        )
    graph = edge_graph(probe, design.clean.shape[1], design.position)

    def make():
        return lambda model, step: circuit_checkpoint(model, step, design, method, ig_steps)

    results, _ = map_checkpoints(run, steps, make, workers=workers, progress=progress)
    names = graph.edge_names(getattr(family, "position_names", ()))
    return CircuitTimeline(
        edge_names=names,
        edge_writer=[graph.writers[i] for i in graph.edge_writer.tolist()],
        edge_reader=[graph.readers[i] for i in graph.edge_reader.tolist()],
        method=method_name(method, ig_steps),
        metric=design.metric,
        n_examples=len(design.clean),
        checkpoints=results,
    )


def with_circuits(result, timeline: CircuitTimeline):
    """A new `RunAnalysis`: `result` with the timeline attached and its columns in the rows."""
    return replace(result.with_columns(timeline.rows()), circuits=timeline)
