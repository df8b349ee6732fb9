"""Random walks on graphs: the data of the random-walk language-modelling family (issue 13).

A `WalkGraph` is a connected undirected graph on nodes 0..n-1 with a transition rule:
unbiased (each neighbour with probability 1/k_i) or degree-biased with exponent κ (neighbour
j with probability ∝ k_j^κ; κ = 0 is unbiased). Both are reversible walks on a weighted
graph, w_ij = (k_i k_j)^κ, so the stationary distribution is unique on a connected graph
(π_i ∝ Σ_j w_ij; π_i ∝ k_i when κ = 0) and walks start from it. Its **entropy rate**
H = −Σ_i π_i Σ_j P_ij log P_ij (nats per token; Σ_i π_i log k_i when unbiased) is the
irreducible loss of next-token prediction on its walks.

Graphs: Erdős–Rényi G(n, m) and Barabási–Albert (networkx), or an edge-list file (one edge
`u v` per line, `#` comments; an error names the line). Edges are undirected; self-loops and
repeated edges are refused, naming the line. A disconnected graph (G(n, m) can be one) is
reduced to its largest connected component, its nodes renumbered in sorted order, and the
number dropped is recorded (`WalkGraph.dropped`): no node has degree 0 and π is unique.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.sampling import BatchSampler


class GraphError(ValueError):
    """A graph that cannot be walked: the message names the file and line or the parameter."""


@dataclass(frozen=True, eq=False)
class WalkGraph:
    n: int
    #: [m, 2] undirected edges, u < v, sorted
    edges: np.ndarray
    kappa: float = 0.0
    #: nodes of the input left out (outside the largest connected component)
    dropped: int = 0
    _P: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        adjacency = np.zeros((self.n, self.n))
        adjacency[self.edges[:, 0], self.edges[:, 1]] = 1.0
        adjacency[self.edges[:, 1], self.edges[:, 0]] = 1.0
        weights = adjacency * self.degrees[None, :] ** self.kappa
        object.__setattr__(self, "_P", weights / weights.sum(1, keepdims=True))

    @property
    def m(self) -> int:
        return len(self.edges)

    @property
    def degrees(self) -> np.ndarray:
        return np.bincount(self.edges.ravel(), minlength=self.n).astype(float)

    @property
    def transition(self) -> np.ndarray:
        """P[i, j]: the probability of stepping from i to j ([n, n], rows sum to 1)."""
        return self._P

    @property
    def stationary(self) -> np.ndarray:
        """π with π P = π: for the reversible walk π_i ∝ Σ_{j ∈ N(i)} (k_i k_j)^κ."""
        k = self.degrees
        mass = k**self.kappa * ((self._P > 0) * k[None, :] ** self.kappa).sum(1)
        return mass / mass.sum()

    def entropy_rate(self) -> float:
        """H = −Σ_i π_i Σ_j P_ij log P_ij, nats per step (the irreducible loss)."""
        P = self._P
        logs = np.log(np.where(P > 0, P, 1.0))
        return float(-(self.stationary * (P * logs).sum(1)).sum())


def from_edges(n: int, edges, kappa: float = 0.0) -> WalkGraph:
    """The walk on the largest connected component of the undirected graph (n nodes)."""
    import networkx as nx

    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from((int(u), int(v)) for u, v in edges)
    component = sorted(max(nx.connected_components(g), key=lambda c: (len(c), -min(c))))
    if len(component) < 2:
        raise GraphError("graph: no edge to walk (the largest connected component is one node)")
    index = {node: i for i, node in enumerate(component)}
    kept = sorted(tuple(sorted((index[u], index[v]))) for u, v in g.subgraph(component).edges())
    return WalkGraph(len(component), np.asarray(kept, dtype=np.int64), kappa, n - len(component))


def erdos_renyi(n: int, m: int, seed: int, kappa: float = 0.0) -> WalkGraph:
    import networkx as nx

    if not 1 <= m <= n * (n - 1) // 2:
        raise GraphError(f"task.m: must be in [1, n(n-1)/2 = {n * (n - 1) // 2}], got {m}")
    return from_edges(n, nx.gnm_random_graph(n, m, seed=seed).edges(), kappa)


def barabasi_albert(n: int, attach: int, seed: int, kappa: float = 0.0) -> WalkGraph:
    import networkx as nx

    if not 1 <= attach < n:
        raise GraphError(f"task.attach: must be in [1, n), got {attach}")
    return from_edges(n, nx.barabasi_albert_graph(n, attach, seed=seed).edges(), kappa)


def read_edge_list(path: str | Path, kappa: float = 0.0) -> WalkGraph:
    """An undirected edge list (`u v` per line, non-negative integer ids, `#` comments)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GraphError(f"{path}: cannot read: {exc}") from None
    edges, seen = [], set()
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise GraphError(f"{path}:{number}: expected two node ids 'u v', got {line.strip()!r}")
        u, v = int(parts[0]), int(parts[1])
        if u == v:
            raise GraphError(f"{path}:{number}: self-loop {u}-{v} (a walk must move)")
        key = (min(u, v), max(u, v))
        if key in seen:
            raise GraphError(
                f"{path}:{number}: edge {u}-{v} listed twice (the graph is undirected)"
            )
        seen.add(key)
        edges.append(key)
    if not edges:
        raise GraphError(f"{path}: no edges")
    return from_edges(max(max(e) for e in edges) + 1, edges, kappa)


def sample_walks(
    graph: WalkGraph, n_walks: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """[n_walks, length] node ids: walks started from the stationary distribution."""
    return walks_from(
        torch.as_tensor(graph.transition),
        torch.as_tensor(graph.stationary),
        n_walks,
        length,
        generator,
    )


def walks_from(
    transition: torch.Tensor,
    stationary: torch.Tensor,
    n_walks: int,
    length: int,
    generator: torch.Generator,
    table: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Walks of a transition matrix ([n, n] float64) from `stationary`, all advanced together:
    per step one uniform draw per walk, looked up in the cumulative probabilities of the
    current node's neighbours only (`neighbour_table`, built here unless given), so a step
    costs O(batch × max degree), not O(batch × n). The draws come from the torch `generator`
    (its state is what a checkpoint saves); the per-position loop runs in numpy, whose small
    ops cost a fraction of torch's dispatch (2-3x the tokens per second, the same walks:
    counting the cumulative entries below u is `searchsorted`'s left side)."""
    start, uniforms = _draws(stationary, n_walks, length, generator)
    return _walk(neighbour_table(transition) if table is None else table, start, uniforms)


def walks_starting_at(
    transition: torch.Tensor, start: torch.Tensor, length: int, generator: torch.Generator
) -> torch.Tensor:
    """[len(start), length] walks of `transition` from the given start nodes (e.g. the
    reversed chain from a walk's current node: a resampled past)."""
    uniforms = torch.rand(length - 1, len(start), 1, generator=generator, dtype=torch.float64)
    return _walk(neighbour_table(transition), start, uniforms)


def _draws(stationary: torch.Tensor, n_walks: int, length: int, generator: torch.Generator):
    """The random numbers of `n_walks` walks: start nodes and one uniform per walk and step."""
    start = torch.multinomial(stationary, n_walks, True, generator=generator)
    # All uniforms in one call: the same stream as one draw of n_walks per step.
    uniforms = torch.rand(length - 1, n_walks, 1, generator=generator, dtype=torch.float64)
    return start, uniforms


def _walk(table, start: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """The walks `_draws`' numbers give: each row advanced on its own, so rows drawn from
    several generators can be walked together."""
    neighbours, cumulative = table
    ids, cum, draws = neighbours.numpy(), cumulative.numpy(), uniforms.numpy()
    length = len(draws) + 1
    last = ids.shape[1] - 1
    walks = np.empty((len(start), length), dtype=np.int64)
    walks[:, 0] = current = start.numpy()
    for t in range(1, length):
        slot = np.minimum((cum[current] < draws[t - 1]).sum(1), last)
        current = ids[current, slot]
        walks[:, t] = current
    return torch.from_numpy(walks)


def neighbour_table(transition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([n, k_max] neighbour ids, [n, k_max] cumulative probabilities) per node, in node order,
    padded with the last neighbour and 1.0; each row's last real entry is set to exactly 1.0
    so rounding can never step to a non-neighbour."""
    transition = torch.as_tensor(transition, dtype=torch.float64)
    mask = transition > 0
    degree = mask.sum(1)
    k_max = int(degree.max())
    # Stable sort puts each row's neighbours first, in increasing node order.
    order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices[:, :k_max]
    probs = transition.gather(1, order)
    slots = torch.arange(k_max)[None]
    real = slots < degree[:, None]
    cumulative = torch.where(real, probs, 0.0).cumsum(1)
    cumulative[~real | (slots == degree[:, None] - 1)] = 1.0
    last = order.gather(1, (degree - 1)[:, None])
    neighbours = torch.where(real, order, last)
    return neighbours, cumulative


class FreshWalks(BatchSampler):
    """New walks at every step from a seeded generator; its state is the whole position.
    It reads the walk from the task's extras (`transition`, `stationary`)."""

    def __init__(self, task, batch_size: int, seed: int, device):
        self.transition, self.stationary = task.extras["transition"], task.extras["stationary"]
        self.table = neighbour_table(self.transition)
        self.length = task.tokens.shape[1] + 1
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self):
        walks = walks_from(
            self.transition,
            self.stationary,
            self.batch_size,
            self.length,
            self.generator,
            self.table,
        )
        return walks[:, :-1].to(self.device), walks[:, 1:].to(self.device)

    @staticmethod
    def next_batches(samplers: list[FreshWalks]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each sampler's `next_batch` (ensemble members trained together, `interp.stacked`),
        from its own generator as always, with one per-position loop for all of them."""
        first = samplers[0]
        if any(not torch.equal(s.transition, first.transition) for s in samplers[1:]):
            return [s.next_batch() for s in samplers]
        draws = [_draws(s.stationary, s.batch_size, s.length, s.generator) for s in samplers]
        walks = _walk(
            first.table, torch.cat([d[0] for d in draws]), torch.cat([d[1] for d in draws], 1)
        )
        parts = walks.split([s.batch_size for s in samplers])
        return [(w[:, :-1].to(s.device), w[:, 1:].to(s.device)) for w, s in zip(parts, samplers)]

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"walks.rng": self.generator.get_state()}, {}

    def restore(self, tensors, meta) -> None:
        self.generator.set_state(tensors["walks.rng"])
