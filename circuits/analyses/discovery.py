"""Circuit discovery on one checkpoint: edge attribution scores, exact edge patching, and
the smallest faithful circuit (the graph and its masked forward: `circuits.analyses.edges`).

The design (clean inputs, corrupted inputs, the metric) is the task family's
(`interp.registry.Family.patching_design`); the metric is the clean answer's logit minus
the corrupted input's answer's logit when the family names one (`corrupt_answer`), else
the log-probability of the clean answer, averaged over the examples.

- `attribute`: one score per edge, ≈ metric(clean) − metric(clean with that edge
  corrupted). `ig_steps = 1` is edge attribution patching (the gradient at the clean run);
  `ig_steps > 1` integrates the gradient along the path that moves every edge together from
  corrupt to clean (midpoint rule), EAP-IG in the mask form: the scores then add up to
  metric(clean) − metric(corrupt), up to the quadrature error. Neuron scores (one-layer
  models) are the same with each MLP hidden unit switched instead of an edge.
- `exact_effects`: the same quantity by intervention, one forward per edge (or neuron).
- `refined_scores` (what `--circuits` uses): attribution, then the top candidates re-scored
  exactly, so the edges that decide the circuit are ranked by intervention.
- `smallest_circuit`: the fewest top-ranked (by |score|) edges that, with every other edge
  ablated to its corrupted value, recover `target` (90 %) of the clean − corrupt gap
  (faithfulness, measured by intervention). Found on a geometric grid of sizes, then by
  bisection inside the first bracket that passes: faithfulness is close to monotone in the
  size along a good ranking, not exactly, so the size is the smallest on that search path.
  With a gap below `MIN_GAP` (nothing to explain, e.g. at initialization) there is no
  circuit: size and faithfulness are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from circuits.analyses.edges import EdgeGraph, RunCache, edge_graph, masked_answer_logits

#: The clean − corrupt metric gap (logits or nats) below which no circuit is sought.
MIN_GAP = 0.25
TARGET = 0.9


def metric_values(logits: Tensor, design) -> Tensor:
    """The design's metric per example (see the module docstring)."""
    answer = design.answer[:, None]
    corrupt_answer = getattr(design, "corrupt_answer", None)
    if corrupt_answer is not None:
        return (logits.gather(1, answer) - logits.gather(1, corrupt_answer[:, None])).squeeze(1)
    return logits.float().log_softmax(-1).gather(1, answer).squeeze(1)


@dataclass
class Prepared:
    """One checkpoint's graph, corrupt-run cache and the metric's clean and corrupt values."""

    model: Any
    design: Any
    graph: EdgeGraph
    corrupt: RunCache
    clean_metric: float
    corrupt_metric: float
    clean: RunCache

    @property
    def gap(self) -> float:
        return self.clean_metric - self.corrupt_metric

    def metric(self, mask: Tensor, neuron_mask: Tensor | None = None) -> Tensor:
        logits, _ = masked_answer_logits(
            self.model, self.graph, self.design.clean, self.corrupt, mask, neuron_mask
        )
        return metric_values(logits, self.design).mean()

    def ones(self) -> Tensor:
        return torch.ones(self.graph.n_edges)

    @property
    def n_neurons(self) -> int:
        return int(self.corrupt.hidden[0].shape[-1]) if self.neurons_apply else 0

    @property
    def neurons_apply(self) -> bool:
        """Neuron granularity: one-layer models with an MLP."""
        return self.graph.n_layers == 1 and self.graph.has_mlp


@torch.no_grad()
def prepare(model, design) -> Prepared:
    graph = edge_graph(model, design.clean.shape[1], design.position)
    corrupt_logits, corrupt = masked_answer_logits(model, graph, design.corrupt, record=True)
    clean_logits, clean = masked_answer_logits(model, graph, design.clean, record=True)
    return Prepared(
        model,
        design,
        graph,
        corrupt,
        float(metric_values(clean_logits, design).double().mean()),
        float(metric_values(corrupt_logits, design).double().mean()),
        clean,
    )


def _alphas(ig_steps: int) -> list[float]:
    return [1.0] if ig_steps == 1 else [(k + 0.5) / ig_steps for k in range(ig_steps)]


def attribute(prep: Prepared, ig_steps: int = 1, neurons: bool = False) -> Tensor:
    """Attribution scores of every edge (or, with `neurons`, every MLP hidden unit of a
    one-layer model, the edges kept clean); see the module docstring."""
    total = None
    for alpha in _alphas(ig_steps):
        with torch.enable_grad():
            if neurons:
                knob = torch.full((prep.n_neurons,), alpha, requires_grad=True)
                value = prep.metric(prep.ones(), knob)
            else:
                knob = torch.full((prep.graph.n_edges,), alpha, requires_grad=True)
                value = prep.metric(knob)
            (grad,) = torch.autograd.grad(value, [knob])
        total = grad if total is None else total + grad
    assert total is not None
    return (total / len(_alphas(ig_steps))).double()


#: Rows (examples × switched edges) per forward of `exact_effects`.
EXACT_ROWS = 4096


@torch.no_grad()
def exact_effects(prep: Prepared, neurons: bool = False, only: Tensor | None = None) -> Tensor:
    """metric(clean) − metric(clean with one edge, or one hidden unit, corrupted), for each
    (or for the indices `only`, in that order): one forward per edge, batched as many edges
    per forward as fit in `EXACT_ROWS` rows."""
    n = prep.n_neurons if neurons else prep.graph.n_edges
    which = torch.arange(n) if only is None else only
    n_examples = len(prep.design.clean)
    per_chunk = max(1, EXACT_ROWS // n_examples)
    effects = torch.empty(len(which), dtype=torch.float64)
    for start in range(0, len(which), per_chunk):
        chunk = range(start, min(len(which), start + per_chunk))
        knob = torch.ones(len(chunk), n)
        knob[torch.arange(len(chunk)), which[start : chunk.stop]] = 0.0
        knob = knob.repeat_interleave(n_examples, 0)  # [edge × example, n]
        tokens = prep.design.clean.repeat(len(chunk), 1)
        corrupt = prep.corrupt.repeat(len(chunk))
        edge_mask, neuron_mask = (
            (torch.ones(1, prep.graph.n_edges), knob) if neurons else (knob, None)
        )
        logits, _ = masked_answer_logits(
            prep.model, prep.graph, tokens, corrupt, edge_mask, neuron_mask
        )
        values = metric_values(logits, _repeated(prep.design, len(chunk))).double()
        effects[start : chunk.stop] = prep.clean_metric - values.view(len(chunk), -1).mean(1)
    return effects


def _repeated(design, times: int):
    from dataclasses import replace

    answer = design.answer.repeat(times)
    corrupt_answer = design.corrupt_answer
    return replace(
        design,
        answer=answer,
        corrupt_answer=None if corrupt_answer is None else corrupt_answer.repeat(times),
    )


#: Candidates `refined_scores` re-scores exactly: at least this many, and at least twice the
#: edges that carry 90 % of the attribution mass.
MIN_CANDIDATES = 32


def refined_scores(prep: Prepared, ig_steps: int = 5) -> Tensor:
    """Attribution for every edge, then exact patching for the top candidates (see
    `MIN_CANDIDATES`): their scores are replaced by the exact effects. Where linearization
    misjudges an edge (redundant paths, saturation) the ranking that decides the circuit is
    then the exact one, at the cost of a few batched forwards instead of one per edge."""
    if prep.graph.n_edges <= MIN_CANDIDATES:  # every edge would be re-scored anyway
        return exact_effects(prep)
    scores = attribute(prep, ig_steps)
    order = torch.argsort(scores.abs(), descending=True, stable=True)
    cumulative = torch.cumsum(scores.abs()[order], 0) / scores.abs().sum().clamp(min=1e-30)
    carrying = int((cumulative < 0.9).sum()) + 1
    candidates = order[: min(len(order), max(MIN_CANDIDATES, 2 * carrying))]
    scores[candidates] = exact_effects(prep, only=candidates)
    return scores


@torch.no_grad()
def faithfulness(prep: Prepared, keep: Tensor, neurons: bool = False) -> float:
    """The fraction of the clean − corrupt gap recovered with only `keep` (bool over the edges,
    or over the hidden units) clean and everything else corrupted."""
    knob = keep.float()
    value = neuron_metric(prep, knob) if neurons else prep.metric(knob)
    return (float(value) - prep.corrupt_metric) / prep.gap


def neuron_metric(prep: Prepared, knob: Tensor) -> Tensor:
    """`prep.metric(all edges clean, knob)` without the forward: in a one-layer model with
    every edge clean only the MLP's hidden units change, and the final residual at the
    answer moves by (knob − 1)(h_clean − h_corrupt) W_out (equal to the full forward to
    float rounding; tested)."""
    from circuits.analyses.edges import logits_from_final, mlp_out_weight

    delta = (prep.clean.hidden[0] - prep.corrupt.hidden[0])[:, 0]  # [batch, hidden] at the answer
    final = prep.clean.resid_final + ((knob - 1.0) * delta) @ mlp_out_weight(prep.model).T
    return metric_values(logits_from_final(prep.model, final), prep.design).mean()


def _grid(n: int) -> list[int]:
    sizes, k = [], 1
    while k < n:
        sizes.append(k)
        k = max(k + 1, math.ceil(k * 1.5))
    return [*sizes, n]


@dataclass(frozen=True)
class Circuit:
    size: int
    faithfulness: float
    keep: Tensor  # bool, over the edges (or hidden units)


def smallest_circuit(
    prep: Prepared, scores: Tensor, target: float = TARGET, neurons: bool = False
) -> Circuit | None:
    """The fewest top-|score| edges (or hidden units) whose faithfulness reaches `target`;
    None when the gap is below `MIN_GAP`."""
    if not abs(prep.gap) >= MIN_GAP:
        return None
    order = torch.argsort(scores.abs(), descending=True, stable=True)
    n = len(order)

    def keep(k: int) -> Tensor:
        mask = torch.zeros(n, dtype=torch.bool)
        mask[order[:k]] = True
        return mask

    found: dict[int, float] = {}

    def passes(k: int) -> bool:
        found[k] = faithfulness(prep, keep(k), neurons) if k < n else 1.0
        return found[k] >= target

    low = 0
    for k in _grid(n):
        if passes(k):
            high = k
            break
        low = k
    while high - low > 1:
        mid = (low + high) // 2
        if passes(mid):
            high = mid
        else:
            low = mid
    return Circuit(high, found[high], keep(high))
