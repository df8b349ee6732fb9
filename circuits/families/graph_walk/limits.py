"""Known answers for next-token prediction on random walks: the best count-based learner.

Given the transitions a model saw (counts c_ij of i → j), the add-½ (Krichevsky–Trofimov)
estimator predicts q(j | i) = (c_ij + ½) / (c_i + K_i/2) over K_i candidate next tokens, in
two forms:

- **knows the graph** (`known_neighbours=True`): the candidates are i's k_i neighbours, the
  sample-efficiency limit of a learner that still has to learn the probabilities;
- **over all n nodes**: what a learner that must also find the edges faces.

Its excess loss over the entropy rate is Σ_i π_i KL(P_i ‖ q_i) (nats per token), computed
exactly from the true transition matrix, not sampled. Once every node has been visited
many times, E[KL(P_i ‖ q_i)] ≈ (K_i − 1) / (2 c_i) with c_i ≈ π_i D, so the excess is about
Σ_i (K_i − 1) / (2D): (2m − n)/(2D) for the graph-aware learner on an unbiased walk
(n nodes, m edges) and n(n − 1)/(2D) over all nodes (`asymptotic_kt_excess`).

`trained_counts` rebuilds the transitions a run trained on: with fresh walks, the family's
own sampler replayed from its seed, one batch per step as the trainer drew them; with a
fixed corpus, the corpus once (repeating it adds no information a count learner could use).
"""

from __future__ import annotations

import numpy as np
import torch


def paired_excess(
    logits: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor, log_p: torch.Tensor
) -> tuple[float, float, torch.Tensor]:
    """The paired excess estimator (ANCHORS §4) on walks `tokens` ([walk, pos]) with next nodes
    `labels` (flattened) and a model's flattened `logits` (or log-probabilities): per token
    log P(next | current) − log q(next | context), averaged per walk. Returns the mean over
    walks, its standard error and the per-walk means. `log_p`: the log transition matrix."""
    current = tokens.reshape(-1).to(labels.device)
    log_q = torch.log_softmax(logits.double(), -1).gather(1, labels[:, None]).squeeze(1)
    excess = (log_p[current, labels] - log_q).reshape(tokens.shape[0], -1)
    per_walk = excess.mean(1)
    return float(per_walk.mean()), float(per_walk.std() / per_walk.numel() ** 0.5), per_walk


def transition_counts(walks: torch.Tensor, n: int) -> np.ndarray:
    """c[i, j] = how often j followed i in `walks` ([batch, length] node ids)."""
    src, dst = walks[:, :-1].reshape(-1), walks[:, 1:].reshape(-1)
    flat = torch.bincount(src * n + dst, minlength=n * n)
    return flat.reshape(n, n).numpy().astype(float)


def kt_predictor(counts: np.ndarray, support: np.ndarray | None) -> np.ndarray:
    """q[i, j] of the add-½ estimator over `support` (a boolean [n, n] mask; None: all)."""
    mask = np.ones_like(counts, dtype=bool) if support is None else support
    pseudo = np.where(mask, counts + 0.5, 0.0)
    return pseudo / pseudo.sum(1, keepdims=True)


def excess_loss(transition: np.ndarray, stationary: np.ndarray, q: np.ndarray) -> float:
    """Σ_i π_i KL(P_i ‖ q_i) in nats: the expected loss of q above the entropy rate."""
    P = transition
    ratio = np.where(P > 0, P / np.where(q > 0, q, 1.0), 1.0)
    return float((stationary * (P * np.log(ratio)).sum(1)).sum())


def kt_excess_loss(graph, counts: np.ndarray, known_neighbours: bool = True) -> float:
    """The count-based learner's excess loss after seeing `counts` (module docstring)."""
    support = graph.transition > 0 if known_neighbours else None
    return excess_loss(graph.transition, graph.stationary, kt_predictor(counts, support))


def asymptotic_kt_excess(graph, tokens: int, known_neighbours: bool = True) -> float:
    """Σ_i (K_i − 1) / (2D): the large-D excess of the add-½ learner after D transitions."""
    candidates = graph.degrees if known_neighbours else np.full(graph.n, graph.n, dtype=float)
    return float((candidates - 1).sum() / (2 * tokens))


#: Where replayed counts are cached (a pure function of the config and the step count):
#: $INTERP_CACHE_DIR, else $XDG_CACHE_HOME/interp, else ~/.cache/interp.


def _cache_file(config, steps: int):
    import hashlib
    import json

    from interp.cache import cache_dir

    # What the replay depends on: the task, and the sampler's seed and batch size.
    key = {
        "task": config.task.to_dict(),
        "seed": config.train.seed,
        "batch_size": config.train.batch_size,
        "steps": steps,
        "version": 1,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return cache_dir("walk_counts") / f"{digest}.npy"


def trained_counts(config, steps: int) -> np.ndarray:
    """c[i, j] over exactly the tokens a run (`config`, a graph_walk RunConfig) trained on in
    its first `steps` steps (module docstring). Replaying fresh walks takes seconds to
    minutes per run, so the result is cached on disk (`interp.cache`; plain .npy, read
    without pickle); a cache that cannot be read or written is recomputed or skipped."""
    path = _cache_file(config, steps)
    try:
        cached = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        cached = None
    if cached is not None:
        return cached
    counts = _replay_counts(config, steps)
    try:
        import os

        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(temp, "wb") as handle:
            np.save(handle, counts, allow_pickle=False)
        os.replace(temp, path)
    except OSError:
        pass
    return counts


def _replay_counts(config, steps: int) -> np.ndarray:
    from interp.registry import family_of
    from interp.tasks import build_task

    task = build_task(config.task)
    n = int(task.extras["transition"].shape[0])
    counts = torch.zeros(n * n, dtype=torch.long)
    if not bool(task.extras["fresh"]):
        tokens, labels = task.split("train")
        return _add(counts, tokens, labels, n).reshape(n, n).numpy().astype(float)
    sampler = family_of(config).sampler(task, config.train, torch.device("cpu"))
    for _ in range(steps):
        tokens, labels = sampler.next_batch()
        counts = _add(counts, tokens, labels, n)
    return counts.reshape(n, n).numpy().astype(float)


def _add(counts: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    return counts + torch.bincount((tokens * n + labels).reshape(-1), minlength=n * n)
