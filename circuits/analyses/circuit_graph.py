"""The circuit graph of a checkpoint: components as nodes, attribution as edges.

Nodes: the embedding (token + position), every attention head, the last layer's MLP
neurons grouped (by frequency cluster for modular tasks, else one group), earlier MLP
layers whole, and the unembedding. Edges carry the mean contribution of a path to the
correct answer's centered logit over the training examples (softmax is shift-invariant,
so only the centered logit matters):

- `component → unembed`: the direct logit attribution of the component
(`circuits.analyses.attribution`);
- `component → MLP group`: the part of the group's output that the component's input
  caused. The group's pre-activation is a sum over upstream components, so each neuron's
  activation is split in proportion, post_n · (c_u · W_in[:, n]) / pre_n (exact for ReLU,
  a first-order split otherwise); these paths and the `b_in` share add up to the group's
  direct attribution;
- `embed → head`: the head's total effect (direct plus through the MLP). In a one-layer
  model the embedding is all a head reads; deeper, this edge stands for everything upstream.

Each edge also has a **generalization share**: the fraction of its correct-logit
contribution that lies in the key-frequency Fourier directions of the answer (the
projection P_K of the restricted loss,
`circuits.families.modular.fourier.restricted_and_excluded_loss`). A Fourier
circuit
puts all of it there (share 1); a memorized lookup table spreads it over all p² inputs
(share ≈ 2|K|/p). The shares are clipped to [0, 1]. Without key frequencies the share is
undefined and reported as NaN.

Attention and MLP biases and LayerNorm biases are constant across inputs and are left out
of the graph. So pre_n above lacks the attention output bias b_O, and where that sum is near
0 the split is large and amplifies rounding: the float32 rounding of the activations alone
moves some edges of a p = 113 checkpoint by up to ~6 % of the largest edge. The sum is taken
in float64, so that the graph is reproducible given the activations (a float32 sum moved
them by up to 16 %).

`circuits.pipeline.analyze` computes every checkpoint's graph in its one pass over the checkpoints
(`checkpoint_graph`, with the run's `GraphSetup`). The paths into the MLP groups cost one
[r, example] × [example, d_mlp] product per input (r = d_head for a head), not one
[example, d_vocab_out] table per path. Pure functions, no plotting; `circuits.viz.circuit_graph`
draws the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuits.analyses.activations import FinalActs

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
        for (src, dst), w, s in zip(
            self.edges, self.weight.tolist(), self.generalization_share.tolist()
        ):
            if _is_head(dst) or math.isnan(s):
                continue
            gen[src] += s * w
            tot[src] += w
            gen[dst] += s * w if dst == UNEMBED else 0.0
            tot[dst] += w if dst == UNEMBED else 0.0
        return {
            n: (min(max(gen[n] / tot[n], 0.0), 1.0) if abs(tot[n]) > 1e-12 else math.nan)
            for n in self.nodes
        }


def _is_head(name: str) -> bool:
    return "H" in name and name.startswith("L") and "MLP" not in name


def neuron_groups(
    neuron_frequency: Int[Tensor, " d_mlp"] | None, d_mlp: int, layer: int
) -> dict[str, Tensor]:
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
    dirs: _Directions | None,
) -> tuple[float, float]:
    """(mean centered correct logit over train, its key-frequency share) of the logits X·M.

    The logits are kept factored (rank ≤ d_model) so the [p², d_vocab_out] table of a path
    is never built: centering over outputs is M − mean. With D the answer directions, the
    mean over train of the projected correct logit (DᵀD·X·M)[i, y_i] is Σ_{d,v} (D·X·M)[d, v]·G[d,
    v]
    (`_Directions.G`), so the projection costs one [direction, example] product.
    """
    M = M.double()
    Mc = M - M.mean(dim=1, keepdim=True)
    X = X.double()
    weight = float((X[train] * Mc[:, labels[train]].T).sum(dim=1).mean())
    if dirs is None or abs(weight) < 1e-12:
        return weight, math.nan
    return weight, _clip_share(float(((dirs.D @ X) @ Mc * dirs.G).sum()) / train.numel(), weight)


@dataclass(frozen=True)
class _Directions:
    D: Float[Tensor, "direction example"]  # the key-frequency answer directions, float64
    G: Float[Tensor, "direction d_vocab_out"]  # G[d, v] = Σ_{i ∈ train, y_i = v} D[d, i]


def _clip_share(projected: float, weight: float) -> float:
    return min(max(projected / weight, 0.0), 1.0)


def _times(rows: Tensor, other: Tensor, transpose: bool = False, same: bool = False) -> Tensor:
    """rows @ other (or rowsᵀ @ other) in other's dtype; when every row is the same (`same`: the
    answer position's embedding in a modular task, whose last token is "="), one row does."""
    rows = rows.to(other.dtype)
    if same:
        return (
            rows[0, :, None] * other.sum(0)[None]
            if transpose
            else (rows[:1] @ other).expand(rows.shape[0], -1)
        )
    return rows.T @ other if transpose else rows @ other


def _same_rows(rows: Tensor) -> bool:
    return rows.shape[0] > 1 and bool((rows == rows[:1]).all())


@dataclass(frozen=True)
class _Component:
    """An upstream component's residual-stream output as rows @ map (map None: the identity)."""

    rows: Tensor  # [example, r]: z of one head (r = d_head), else the output itself (r = d_model)
    map: Tensor | None = None  # [r, d_model]: the head's W_O

    def through(self, M: Tensor) -> Tensor:
        return M if self.map is None else self.map.to(M.dtype) @ M


def _rms(x: Tensor, eps: float) -> Tensor:
    return (x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True).add(eps).sqrt()


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
    is_ln = model.cfg.normalization_type is not None
    labels = labels.long()
    y = labels[train]
    n_train = train.numel()
    dirs = None
    if directions is not None and directions.shape[0] > 0:
        D = directions.double()
        dirs = _Directions(
            D, D.new_zeros(D.shape[0], model.W_U.shape[1]).index_add_(1, y, D[:, train])
        )

    # Upstream components at the final position, in residual-stream order.
    components: dict[str, _Component] = {EMBED: _Component(acts.embed)}
    head_names: list[str] = []
    for layer in range(n_layers):
        for h in range(acts.z.shape[2]):
            head_names.append(f"L{layer}H{h}")
            components[head_names[-1]] = _Component(
                acts.z[layer][:, h], model.blocks[layer].attn.W_O[h]
            )
        if layer < last:
            components[f"L{layer} MLP"] = _Component(acts.mlp_out[layer])

    # The residual stream read by the unembedding, through the final LayerNorm at its frozen
    # per-example scale: the centering is folded into the map, the scale is a row factor.
    W_logit = model.W_U.double()
    row_scale = torch.ones(acts.logits.shape[0], 1, dtype=torch.float64)
    if is_ln:
        W_logit = model.ln_final.w.double()[:, None] * W_logit
        W_logit = W_logit - W_logit.mean(0, keepdim=True)
        row_scale = 1.0 / _rms(acts.resid_final.double(), model.cfg.eps)

    edges: list[tuple[str, str]] = []
    weights: list[float] = []
    shares: list[float] = []

    def add(src: str, dst: str, weight: float, share: float) -> None:
        edges.append((src, dst))
        weights.append(weight)
        shares.append(share)

    # Direct edges into the unembedding.
    for name, c in components.items():
        add(
            name,
            UNEMBED,
            *_share(c.rows.double() * row_scale, c.through(W_logit), labels, train, dirs),
        )

    # Paths through the last MLP layer. Each input u's part of the pre-activation is c_u·T
    # (÷ the LayerNorm scale; its centering folded into T) and its share of neuron n's
    # activation is post·(c_u·T)/pre: exact for ReLU, a first-order split otherwise. A set of
    # neurons with activations A [example, neuron] reaches the logits as A·W_out, so the
    # weight and key-frequency projection of a path are sums over neurons of Σ_i A·B with
    # two maps built once per checkpoint: B1 = the neuron's centered logit of the correct
    # answer (training rows) and B2 = its projection on the answer directions. For input u,
    # Σ_i ratio·(c_u·T)·B is the [r, example] × [example, neuron] product c_uᵀ·(ratio·B),
    # contracted with T; a group's edges are sums of per-neuron numbers.
    block = model.blocks[last]
    mlp = block.mlp
    T = mlp.W_in.double()
    inv_mid = None
    if is_ln:
        resid_mid = sum(
            c.rows.double() if c.map is None else c.rows.double() @ c.map.double()
            for c in components.values()
        )
        inv_mid = 1.0 / _rms(resid_mid, model.cfg.eps)
        wW = block.ln2.w.double()[:, None] * T
        T = wW - wW.mean(0, keepdim=True)
    # The inputs of the last MLP as [example, r] rows and their [r, d_mlp] part of W_in: one
    # block per layer's heads (z of every head, W_O^h·T stacked), the embedding, earlier MLPs.
    # (components, rows, K, every row the same)
    sources: list[tuple[list[str], Tensor, Tensor, bool]] = []
    for layer in range(n_layers):
        names = [h for h in head_names if h.startswith(f"L{layer}H")]
        W_O = model.blocks[layer].attn.W_O.double()  # [head, d_head, d_model]
        sources.append(
            (
                names,
                acts.z[layer].reshape(acts.z.shape[1], -1),
                W_O.reshape(-1, W_O.shape[-1]) @ T,
                False,
            )
        )
    sources += [
        ([name], c.rows, T, _same_rows(c.rows)) for name, c in components.items() if c.map is None
    ]
    # The split's denominator is summed in float64: where pre ≈ 0, the float32 rounding of a
    # sum of larger, cancelling parts would dominate post/pre (the previous implementation's
    # float32 sum moved some edges by several % of the largest).
    n_examples, d_mlp = acts.mlp_post.shape
    constant = mlp.b_in.double() if inv_mid is None else torch.zeros(d_mlp, dtype=torch.float64)
    pre = None
    for _, rows, K, same in sources:
        if same:
            constant = constant + rows[0].double() @ K
        elif pre is None:
            pre = rows.double() @ K
        else:
            pre.addmm_(rows.double(), K)
    pre = constant.expand(n_examples, d_mlp).clone() if pre is None else pre.add_(constant)
    if inv_mid is not None:
        pre = pre.mul_(inv_mid).add_(mlp.b_in.double())
    pre = pre.float()
    post = acts.mlp_post.float()
    ratio = (post / pre).masked_fill_(pre.abs_() <= 1e-6, 0.0)
    del pre
    if inv_mid is not None:
        ratio *= inv_mid.float()

    W_out = mlp.W_out.double()
    neuron_logit = W_out @ W_logit  # [d_mlp, d_vocab_out]
    neuron_logit = neuron_logit - neuron_logit.mean(dim=1, keepdim=True)
    B1 = (neuron_logit[:, y].T * row_scale[train]).float()  # [train, d_mlp]
    own = [(post[train] * B1).sum(0)]
    C = [(B1.mul_(ratio[train]), train)]
    if dirs is not None:
        # B2[i, n] = Σ_d D[d, i]·H[d, n]: rank `direction`, so the group's own edge needs no B2.
        H = dirs.G @ neuron_logit.T  # [direction, d_mlp]
        scaled = (dirs.D * row_scale.T).float()  # [direction, example]
        own.append((H.float() * (scaled @ post)).sum(0))
        B2 = scaled.T @ H.float()  # [example, d_mlp]
        C.append((B2.mul_(ratio), None))
    del ratio

    paths: dict[str, list[Tensor]] = {}
    for names, rows, K, same in sources:
        K = K.float().view(len(names), -1, K.shape[-1])  # [component, r, d_mlp]
        per_map = [
            (_times(rows if at is None else rows[at], Cb, True, same).view_as(K) * K).sum(1)
            for Cb, at in C
        ]  # each [component, d_mlp]: Σ_i ratio·(c_u·T)·B per neuron
        paths.update({name: [m[i] for m in per_map] for i, name in enumerate(names)})
    paths = {name: paths[name] for name in components}  # residual-stream order

    def group_edge(per_neuron: list[Tensor], index: Tensor) -> tuple[float, float]:
        weight = float(per_neuron[0][index].double().sum()) / n_train
        if len(per_neuron) == 1 or abs(weight) < 1e-12:
            return weight, math.nan
        return weight, _clip_share(float(per_neuron[1][index].double().sum()) / n_train, weight)

    head_total = {h: weights[edges.index((h, UNEMBED))] for h in head_names}
    head_gen = {h: head_total[h] * _nan0(shares[edges.index((h, UNEMBED))]) for h in head_names}
    for group, index in groups.items():
        add(group, UNEMBED, *group_edge(own, index))
        for name, per_neuron in paths.items():
            weight, share = group_edge(per_neuron, index)
            add(name, group, weight, share)
            if name in head_total:
                head_total[name] += weight
                head_gen[name] += weight * _nan0(share)
    for h in head_names:
        add(
            EMBED,
            h,
            head_total[h],
            _clip_share(head_gen[h], head_total[h]) if abs(head_total[h]) > 1e-12 else math.nan,
        )

    logits = acts.logits.double()
    centered = logits - logits.mean(dim=1, keepdim=True)
    total = float(centered[train].gather(1, labels[train, None]).mean())
    nodes = [EMBED, *head_names, *[n for n in components if n.endswith("MLP")], *groups, UNEMBED]
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
