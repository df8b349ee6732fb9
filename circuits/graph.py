"""The circuit graph of a checkpoint: components as nodes, attribution as edges.

Nodes: the embedding (token + position), every attention head, the last layer's MLP
neurons grouped (by frequency cluster for modular tasks, else one group), earlier MLP
layers whole, and the unembedding. Edges carry the mean contribution of a path to the
correct answer's centered logit over the training examples (softmax is shift-invariant,
so only the centered logit matters):

- `component → unembed`: the direct logit attribution of the component (`circuits.attribution`);
- `component → MLP group`: the part of the group's output that the component's input
  caused. The group's pre-activation is a sum over upstream components, so each neuron's
  activation is split in proportion, post_n · (c_u · W_in[:, n]) / pre_n (exact for ReLU,
  a first-order split otherwise); these paths and the `b_in` share add up to the group's
  direct attribution;
- `embed → head`: the head's total effect (direct plus through the MLP). In a one-layer
  model the embedding is all a head reads; deeper, this edge stands for everything upstream.

Each edge also has a **generalization share**: the fraction of its correct-logit
contribution that lies in the key-frequency Fourier directions of the answer (the
projection P_K of the restricted loss, `circuits.fourier.restricted_and_excluded_loss`). A Fourier circuit
puts all of it there (share 1); a memorized lookup table spreads it over all p² inputs
(share ≈ 2|K|/p). The shares are clipped to [0, 1]. Without key frequencies the share is
undefined and reported as NaN.

Attention and MLP biases and LayerNorm biases are constant across inputs and are left out
of the graph. Pure functions, no plotting; `circuits.viz.graph` draws the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.activations import FinalActs, final_position_activations

UNEMBED = "unembed"
EMBED = "embed"


@dataclass(frozen=True)
class CircuitGraph:
    """One checkpoint's graph. `edges[i] = (source, target)`; weights and shares align with it."""

    step: int
    nodes: list[str]
    edges: list[tuple[str, str]]
    weight: Float[Tensor, " edge"]  # mean contribution to the centered correct logit (train)
    generalization_share: Float[Tensor, " edge"]  # in [0, 1], NaN when undefined
    total_logit: float  # the model's mean centered correct logit on the training examples

    def node_effect(self) -> dict[str, float]:
        """Each node's effect on the answer: the sum of its edges that end in the unembedding
        or an MLP group (edges into heads are totals already counted at the head)."""
        effect = {name: 0.0 for name in self.nodes}
        for (src, dst), w in zip(self.edges, self.weight.tolist()):
            if not _is_head(dst):
                effect[src] += w
        effect[UNEMBED] = self.total_logit
        return effect

    def node_share(self) -> dict[str, float]:
        """Generalization share of each node's effect (weighted over its counted edges)."""
        gen = {name: 0.0 for name in self.nodes}
        tot = {name: 0.0 for name in self.nodes}
        for (src, dst), w, s in zip(self.edges, self.weight.tolist(), self.generalization_share.tolist()):
            if _is_head(dst) or math.isnan(s):
                continue
            gen[src] += s * w
            tot[src] += w
            gen[dst] += s * w if dst == UNEMBED else 0.0
            tot[dst] += w if dst == UNEMBED else 0.0
        return {n: (min(max(gen[n] / tot[n], 0.0), 1.0) if abs(tot[n]) > 1e-12 else math.nan) for n in self.nodes}


def _is_head(name: str) -> bool:
    return "H" in name and name.startswith("L") and "MLP" not in name


def neuron_groups(neuron_frequency: Int[Tensor, " d_mlp"] | None, d_mlp: int, layer: int) -> dict[str, Tensor]:
    """Neuron index sets of the last MLP layer: one per frequency cluster plus the rest."""
    if neuron_frequency is None:
        return {f"L{layer} MLP": torch.arange(d_mlp)}
    groups: dict[str, Tensor] = {}
    for k in sorted(set(int(f) for f in neuron_frequency.tolist()) - {-1}):
        groups[f"L{layer} MLP freq {k}"] = torch.nonzero(neuron_frequency == k).squeeze(1)
    rest = torch.nonzero(neuron_frequency < 1).squeeze(1)
    if rest.numel():
        groups[f"L{layer} MLP unclustered"] = rest
    return groups


def _share(
    X: Float[Tensor, "example rank"],
    M: Float[Tensor, "rank d_vocab_out"],
    labels: Int[Tensor, " example"],
    train: Int[Tensor, " index"],
    directions: Float[Tensor, "direction example"] | None,
) -> tuple[float, float]:
    """(mean centered correct logit over train, its key-frequency share) of the logits X·M.

    The logits are kept factored (rank ≤ d_mlp) so the [p², d_vocab_out] table of every path
    is never built: centering over outputs is M − mean, and the projection onto the answer
    directions is (D·X)·M.
    """
    M = M.double()
    Mc = M - M.mean(dim=1, keepdim=True)
    y = labels[train]
    correct = (X[train].double() * Mc[:, y].T).sum(dim=1)
    weight = float(correct.mean())
    if directions is None or directions.shape[0] == 0 or abs(weight) < 1e-12:
        return weight, math.nan
    coef = (directions.to(X.dtype) @ X).double() @ Mc  # [direction, d_vocab_out]
    projected = einops.einsum(directions[:, train].double(), coef[:, y], "direction i, direction i -> i")
    return weight, min(max(float(projected.mean()) / weight, 0.0), 1.0)


@torch.inference_mode()
def circuit_graph(
    model,
    acts: FinalActs,
    labels: Int[Tensor, " example"],
    train: Int[Tensor, " index"],
    groups: dict[str, Tensor],
    directions: Float[Tensor, "direction example"] | None = None,
    step: int = 0,
) -> CircuitGraph:
    """The graph of one checkpoint from its final-position activations over all examples.

    `labels` must be valid (≥ 0) for every example in `acts`; `train` indexes into them.
    `directions` are the key-frequency answer directions over the same examples.
    """
    n_layers = acts.z.shape[0]
    last = n_layers - 1
    W_U = model.W_U.double()
    is_ln = model.cfg.normalization_type is not None
    labels = labels.long()

    # Upstream components at the final position, in residual-stream order.
    upstream: dict[str, Tensor] = {EMBED: acts.embed.double()}
    head_names: list[str] = []
    for layer in range(n_layers):
        attn = model.blocks[layer].attn
        per_head = einops.einsum(
            acts.z[layer].double(), attn.W_O.double(), "batch head d_head, head d_head d_model -> head batch d_model"
        )
        for h in range(per_head.shape[0]):
            upstream[f"L{layer}H{h}"] = per_head[h]
            head_names.append(f"L{layer}H{h}")
        if layer < last:
            upstream[f"L{layer} MLP"] = acts.mlp_out[layer].double()

    final_scale = 1.0
    if is_ln:
        resid = acts.resid_final.double()
        final_scale = (resid - resid.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(model.cfg.eps).sqrt()

    def factor(vec: Tensor) -> tuple[Tensor, Tensor]:
        """A component's logits as X·M (through the final LayerNorm at its frozen scale)."""
        if is_ln:
            vec = (vec - vec.mean(-1, keepdim=True)) / final_scale.to(vec.dtype)
            return vec, model.ln_final.w.double()[:, None] * W_U
        return vec, W_U

    edges: list[tuple[str, str]] = []
    weights: list[float] = []
    shares: list[float] = []

    def add(src: str, dst: str, X: Tensor, M: Tensor) -> None:
        w, s = _share(X, M, labels, train, directions)
        edges.append((src, dst))
        weights.append(w)
        shares.append(s)

    # Direct edges into the unembedding.
    for name, vec in upstream.items():
        add(name, UNEMBED, *factor(vec))

    # Paths through the last MLP layer, group by group. The [batch, d_mlp] products are the
    # bulk of the cost (p² examples × d_mlp per upstream component), so they run in float32.
    mlp = model.blocks[last].mlp
    W_in, W_out = mlp.W_in.float(), mlp.W_out.float()
    post = acts.mlp_post.float()  # [batch, d_mlp]
    mlp_inputs = {n: v for n, v in upstream.items() if not (n.startswith(f"L{last}") and "MLP" in n)}
    if is_ln:
        resid_mid = sum(mlp_inputs.values())
        mid_scale = (resid_mid - resid_mid.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(model.cfg.eps).sqrt()
        ln2_w = model.blocks[last].ln2.w.double()
        mlp_inputs = {n: (v - v.mean(-1, keepdim=True)) / mid_scale * ln2_w for n, v in mlp_inputs.items()}
    per_input = {n: v.float() @ W_in for n, v in mlp_inputs.items()}  # [batch, d_mlp] each
    pre = sum(per_input.values()) + mlp.b_in.float()
    is_active = pre.abs() > 1e-6
    ratio = torch.where(is_active, post / torch.where(is_active, pre, torch.ones_like(pre)), torch.zeros_like(pre))
    head_total = {h: weights[edges.index((h, UNEMBED))] for h in head_names}
    head_gen = {h: head_total[h] * _nan0(shares[edges.index((h, UNEMBED))]) for h in head_names}
    for group, index in groups.items():
        out = W_out[index].double()  # [n_group, d_model]

        def through_group(acts_in_group: Tensor, out: Tensor = out) -> tuple[Tensor, Tensor]:
            if is_ln:
                return factor(acts_in_group.double() @ out)
            return acts_in_group, out @ W_U

        add(group, UNEMBED, *through_group(post[:, index]))
        for name, contrib in per_input.items():
            add(name, group, *through_group(ratio[:, index] * contrib[:, index]))
            if name in head_total:
                head_total[name] += weights[-1]
                head_gen[name] += weights[-1] * _nan0(shares[-1])
    for h in head_names:
        edges.append((EMBED, h))
        weights.append(head_total[h])
        shares.append(min(max(head_gen[h] / head_total[h], 0.0), 1.0) if abs(head_total[h]) > 1e-12 else math.nan)

    logits = acts.logits.double()
    centered = logits - logits.mean(dim=1, keepdim=True)
    total = float(centered[train].gather(1, labels[train, None]).mean())
    nodes = [EMBED, *head_names, *[n for n in upstream if n.endswith("MLP")], *groups, UNEMBED]
    return CircuitGraph(
        step=step,
        nodes=nodes,
        edges=edges,
        weight=torch.tensor(weights, dtype=torch.float64),
        generalization_share=torch.tensor(shares, dtype=torch.float64),
        total_logit=total,
    )


def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def circuit_graph_series(run, analysis=None, steps: list[int] | None = None) -> list[CircuitGraph]:
    """The graph at each checkpoint of a run (a map over checkpoints, one model in memory).

    Neuron groups are fixed over the run to the final checkpoint's frequency clusters
    (from `analysis`, a `RunAnalysis` with the `fourier` part), so the slider shows the same
    nodes growing and fading; key frequencies come from the analysis too.
    """
    from circuits import fourier

    config = run.config
    task = run.task
    valid = torch.nonzero(task.labels >= 0).squeeze(1)
    labels = task.labels[valid]
    position_of = torch.full((task.n_examples,), -1, dtype=torch.long)
    position_of[valid] = torch.arange(valid.numel())
    train = position_of[task.train_index]  # every split the model is trained on
    train = train[train >= 0]
    steps = list(run.steps if steps is None and analysis is None else (steps or analysis.steps))
    neuron_frequency = None
    directions = None
    if analysis is not None:
        with_clusters = [c for c in analysis.checkpoints if c.neuron_frequency is not None]
        if with_clusters:
            neuron_frequency = with_clusters[-1].neuron_frequency
        if config.task.kind == "modular" and analysis.key_frequencies:
            group = fourier.answer_group(config.task.operation, config.task.p)
            directions = fourier.answer_directions(labels, group, analysis.key_frequencies)
    graphs = []
    tokens = task.tokens[valid]
    for step, model in run.iter_models(steps):
        groups = neuron_groups(neuron_frequency, model.cfg.d_mlp, model.cfg.n_layers - 1)
        acts = final_position_activations(model, tokens)
        graphs.append(circuit_graph(model, acts, labels, train, groups, directions, step=step))
    return graphs
