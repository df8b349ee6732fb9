"""What a walk model's loss is made of, node by node, and whether it reads past the current node.

**Per-node excess** (`node_excess`): on test walks, each token's expected excess over H is
KL(P_i ‖ q(· | context)) with i the current node (the full distribution, so no sampling noise
from the next node); averaged over node i's tokens it is the node's KL, and weighted by the
node's share of test tokens the nodes add up exactly to the expected excess over H (the
quantity the paired estimator samples). `by_bins` splits that sum over groups of nodes (by
their visits in the training corpus, or their degree), so the difference between two
recipes splits into where it comes from: rare nodes, hubs.

**Context dependence** (`context_dependence`): the walk is Markov, so the best predictor reads
only the current node; anything a model draws from earlier tokens is memorized corpus. At
the last position of each walk the earlier context is replaced by a resampled past that ends
at the same current node: a walk of the reversed chain from the current node, reversed
(P*_ij = π_j P_ji / π_i; the walks here are reversible, so P* = P and the resampled past has
the law of a real one). The change in the true next node's loss, and the KL between the
predictions with the real and the resampled context, are 0 for a model that reads only the
current node; each comes with its standard error over walks. On corpus walks, a model that
memorized them loses its below-H loss when the context is resampled; on test walks the
context is new to every model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

#: tokens [walk, pos] -> log-probabilities [walk, pos, vocab]
Predictor = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NodeExcess:
    """Per node: the mean expected excess of its test tokens (NaN if none), its token share."""

    kl: np.ndarray
    share: np.ndarray

    @property
    def total(self) -> float:
        """The expected excess over H, nats per token (Σ share · KL)."""
        return float(np.nansum(self.kl * self.share))


@dataclass(frozen=True)
class ContextDependence:
    """Resampling the context before the current node (module docstring), per walk means."""

    delta_loss: float
    delta_loss_se: float
    kl: float
    kl_se: float
    walks: int


def node_excess(log_q: torch.Tensor, current: torch.Tensor, transition: np.ndarray) -> NodeExcess:
    """From a model's log-probabilities [token, vocab] at tokens whose current nodes are
    `current` [token], and the true transition matrix."""
    n = transition.shape[0]
    P = torch.as_tensor(transition, dtype=torch.float64)
    log_p = torch.log(P.clamp_min(1e-300))
    rows = P[current]
    # P_ij log(P_ij / q_j) over the support only: q may be 0 (log q = −inf) off it
    gap = torch.where(rows > 0, log_p[current] - log_q.double()[:, :n], 0.0)
    per_token = (rows * gap).sum(1)
    visits = torch.bincount(current, minlength=n).double()
    summed = torch.zeros(n, dtype=torch.float64).index_add_(0, current, per_token)
    kl = (summed / visits.clamp_min(1)).numpy()
    kl[visits.numpy() == 0] = np.nan
    return NodeExcess(kl, (visits / visits.sum()).numpy())


def by_bins(
    recipes: dict[str, NodeExcess], key: np.ndarray, bins: int = 3, label: str = "visits"
) -> list[dict]:
    """Nodes split into `bins` groups of equal size by `key` (e.g. corpus visits, degree);
    per group and recipe: the mean node KL and the group's contribution to the excess
    (Σ share · KL; the contributions of all groups add up to each recipe's total)."""
    order = np.argsort(key, kind="stable")
    rows = []
    for number, nodes in enumerate(np.array_split(order, bins)):
        row = {
            "group": f"{label} {key[nodes].min():g}–{key[nodes].max():g}",
            "nodes": len(nodes),
            "share": float(next(iter(recipes.values())).share[nodes].sum()),
        }
        for name, result in recipes.items():
            row[f"{name} kl"] = float(np.nanmean(result.kl[nodes]))
            row[f"{name} contribution"] = float(np.nansum(result.kl[nodes] * result.share[nodes]))
        rows.append(row)
    return rows


def resampled_past(tokens: torch.Tensor, transition: np.ndarray, generator) -> torch.Tensor:
    """`tokens` [walk, pos] with every position before the last replaced by a resampled past
    ending at the last (current) node (module docstring)."""
    from circuits.families.graph_walk.walks import walks_starting_at

    P = np.asarray(transition, dtype=np.float64)
    pi = _stationary(P)
    reverse = (pi[None, :] * P.T) / pi[:, None]  # P*_ij = π_j P_ji / π_i
    backward = walks_starting_at(
        torch.as_tensor(reverse), tokens[:, -1], tokens.shape[1], generator
    )
    return backward.flip(1)


def _stationary(P: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eig(P.T)
    pi = np.abs(np.real(vectors[:, np.argmin(np.abs(values - 1))]))
    return pi / pi.sum()


def context_dependence(
    predict: Predictor,
    tokens: torch.Tensor,
    next_nodes: torch.Tensor,
    transition: np.ndarray,
    seed: int = 0,
) -> ContextDependence:
    """At the last position of each walk: the loss of its true next node (`next_nodes`
    [walk]) and the prediction, with the real context and with a resampled one."""
    generator = torch.Generator().manual_seed(seed)
    real = predict(tokens)[:, -1].double()
    other = predict(resampled_past(tokens, transition, generator))[:, -1].double()
    index = next_nodes[:, None]
    delta = real.gather(1, index)[:, 0] - other.gather(1, index)[:, 0]  # loss(other) − loss(real)
    kl = (real.exp() * (real - other)).sum(1)

    def mean_se(x: torch.Tensor) -> tuple[float, float]:
        return float(x.mean()), float(x.std() / len(x) ** 0.5)

    (d, d_se), (k, k_se) = mean_se(delta), mean_se(kl)
    return ContextDependence(d, d_se, k, k_se, len(tokens))


def predictor(members: Sequence, combine: str = "logits", batch: int = 256) -> Predictor:
    """The log-probabilities of one model or an ensemble (`ensemble.COMBINATIONS`) from
    loaded models (`Run.model_at`), on every position."""
    from circuits.families.graph_walk.ensemble import combined_log_probs
    from interp.model import sequence_logits

    @torch.inference_mode()
    def predict(tokens: torch.Tensor) -> torch.Tensor:
        chunks = []
        for start in range(0, len(tokens), batch):
            part = tokens[start : start + batch]
            logs = torch.stack(
                [torch.log_softmax(sequence_logits(m, part).double(), -1) for m in members]
            )
            chunks.append(combined_log_probs(logs, combine))
        return torch.cat(chunks)

    return predict
