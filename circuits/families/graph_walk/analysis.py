"""Per-checkpoint analysis of a random-walk model (the `graph_walk` family).

- **Learned transitions.** For each node i, the model's mean predicted next-node
  distribution q̄_i over the test positions whose current node is i, against the true row
  P_i: KL(P_i ‖ q̄_i) per node (nats), beside how often the node occurs (a proxy for how
  often training showed it: visits ∝ π_i) and its degree, so one can see which nodes'
  edges are learned when. Averaging q over contexts first makes q̄_i a mixture, so this
  KL is a lower bound on the mean per-position KL; the paired `excess_loss` is the exact
  mean.
- **Which components write the next-node logits.** Direct logit attribution
  (`circuits.analyses.attribution`) at every position of the test walks: each component's mean
  contribution to the centered logit of the true next node (`dla/embed`, `dla/L0H1`,
  `dla/L1 MLP`, ...). A model that stores the graph's edges in its MLPs shows them here.
- **Where the current node is read from.** Per layer and head, the mean attention from each
  query position t to itself (the current node) and to t − 1 (the node before). A Markov
  walk needs only the current node, which the residual stream already holds at t, so
  attention is optional here; a model that attends to t − 1 uses context it does not need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class WalkCheckpoint:
    step: int
    row: dict[str, Any]
    #: KL(P_i ‖ q̄_i) per node (NaN for nodes absent from the test walks)
    kl_per_node: np.ndarray | None = None
    #: occurrences of each node as the current node in the test walks
    visits: np.ndarray | None = None
    #: each node's degree (number of possible next nodes)
    degree: np.ndarray | None = None
    #: [layer, head] mean attention to the query's own position / the one before
    attention_self: np.ndarray | None = None
    attention_previous: np.ndarray | None = None
    #: direct logit attribution of the true next node, per component (`dla_names`)
    dla: torch.Tensor | None = None
    dla_names: list[str] | None = None


def learned_transitions(
    logits: torch.Tensor, current: torch.Tensor, transition: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(KL per node, visits) from the flattened test logits and current nodes."""
    n = transition.shape[0]
    probs = torch.softmax(logits.double(), -1)[:, :n]
    visits = torch.bincount(current, minlength=n).double()
    summed = torch.zeros(n, probs.shape[1], dtype=torch.float64).index_add_(0, current, probs)
    q = (summed / visits.clamp_min(1)[:, None]).numpy()
    P = transition
    ratio = np.where(P > 0, P / np.clip(q, 1e-300, None), 1.0)
    kl = (P * np.log(ratio)).sum(1)
    kl[visits.numpy() == 0] = np.nan
    return kl, visits.numpy()


@torch.inference_mode()
def all_position_activations(model, tokens: torch.Tensor):
    """The DLA inputs at every position, positions flattened into the batch axis (a
    `FinalActs` whose `pattern` and `mlp_post`, which DLA does not read, are empty)."""
    from circuits.analyses.activations import FinalActs, hook_names

    n_layers = model.cfg.n_layers
    # The answer-position record's hooks, less the two DLA does not read.
    names = {n for n in hook_names(n_layers) if not n.endswith(("hook_pattern", "hook_post"))}
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)

    def flat(x: torch.Tensor) -> torch.Tensor:  # [batch, pos, ...] -> [batch * pos, ...]
        return x.reshape(-1, *x.shape[2:])

    count = tokens.numel()
    return FinalActs(
        logits=flat(logits),
        embed=flat(cache["hook_embed"] + cache["hook_pos_embed"]),
        pattern=torch.zeros(n_layers, count, model.cfg.n_heads, 0),
        mlp_post=torch.zeros(count, 0),
        z=torch.stack([flat(cache[f"blocks.{i}.attn.hook_z"]) for i in range(n_layers)]),
        mlp_out=torch.stack([flat(cache[f"blocks.{i}.hook_mlp_out"]) for i in range(n_layers)]),
        resid_final=flat(cache[f"blocks.{n_layers - 1}.hook_resid_post"]),
    )


def next_node_attribution(model, tokens: torch.Tensor, labels: torch.Tensor):
    """Direct logit attribution of the true next node at every position
    (`circuits.analyses.attribution.Attribution`)."""
    from circuits.analyses.attribution import direct_logit_attribution

    return direct_logit_attribution(
        model, all_position_activations(model, tokens), labels.reshape(-1)
    )


@torch.inference_mode()
def attention_to_positions(model, tokens: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """[layer, head] mean attention of each query to itself and to the position before."""
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name.endswith("hook_pattern"))
    own, previous = [], []
    for layer in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"].double()  # [batch, head, q, k]
        diagonal = pattern.diagonal(dim1=-2, dim2=-1)  # [batch, head, q]
        before = pattern.diagonal(offset=-1, dim1=-2, dim2=-1)  # [batch, head, q - 1]
        own.append(diagonal.mean((0, 2)).numpy())
        previous.append(before.mean((0, 2)).numpy())
    return np.stack(own), np.stack(previous)


def analyze_walk_checkpoint(
    model, step: int, run, family, parts: tuple[str, ...], evaluators=()
) -> WalkCheckpoint:
    """One checkpoint: the base columns, the family's `evaluators` (the excess loss the phases
    read), and the requested `parts`."""
    from circuits.pipeline.analyze import basic_columns

    base, by_split = basic_columns(model, run, family, evaluators)
    row = {"step": step, **base}
    task = run.task
    transition = task.extras["transition"].numpy()
    kl = visits = degree = own = previous = dla = dla_names = None
    if "attribution" in parts:
        from circuits.analyses.attribution import attribution_columns

        tokens, labels = (x[:128] for x in task.split("test"))
        result = next_node_attribution(model, tokens, labels)
        row.update(attribution_columns(result))
        row["dla/total"] = result.total
        dla, dla_names = result.mean.float(), result.names
    if "transitions" in parts:
        logits, _ = by_split["test"]
        current = task.split("test")[0].reshape(-1)
        kl, visits = learned_transitions(logits, current, transition)
        degree = (transition > 0).sum(1)
        row["kl_node_mean"] = float(np.nanmean(kl))
        row["kl_node_max"] = float(np.nanmax(kl))
    if "attention" in parts:
        own, previous = attention_to_positions(model, task.split("test")[0][:128])
        for layer in range(own.shape[0]):
            for head in range(own.shape[1]):
                row[f"attn/L{layer}H{head}->self"] = float(own[layer, head])
                row[f"attn/L{layer}H{head}->prev"] = float(previous[layer, head])
    return WalkCheckpoint(step, row, kl, visits, degree, own, previous, dla, dla_names)


def excess_loss_evaluator(config, graph):
    """`excess_loss` (nats/token over H, paired with the true log-probabilities on the test
    walks of `graph`, the run's `family.walk_graph`) and its standard error over walks;
    `entropy_rate` for reference."""
    import torch

    from circuits.families.graph_walk.limits import paired_excess

    log_p = torch.log(torch.as_tensor(graph.transition).clamp_min(1e-300))
    entropy_rate = graph.entropy_rate()

    def evaluate(model, task, by_split) -> dict[str, float]:
        row = {"entropy_rate": entropy_rate}
        # `val_excess_loss` (a fixed corpus's validation walks) is what selection may read.
        for split, prefix in (("test", ""), ("val", "val_")):
            if split not in by_split:
                continue
            logits, labels = by_split[split]
            tokens = task.split(split)[0]
            mean, se, _ = paired_excess(logits, tokens, labels, log_p.to(labels.device))
            row.update({f"{prefix}excess_loss": mean, f"{prefix}excess_loss_se": se})
        return row

    return evaluate
