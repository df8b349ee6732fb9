"""Analyses of the entity tasks (two-hop composition, comparison) and their `circuit_score`.

This module holds what both entity families share; what differs (counterfactual swaps,
logit-lens and probe targets, the score's metric and control) is declared by each family
(`circuits.families.entity.two_hop`, `circuits.families.entity.comparison`), which every
function here takes as its first argument.

Sites (positions of `circuits.families.entity.two_hop_data` /
`circuits.families.entity.comparison_data`):

    two_hop     h (0)      r1 (1)   r2 (2, answer read here)    hidden state: bridge b at r1
    comparison  attr (0)   e1 (1)   e2 (2, answer read here)    hidden states: v1 at e1, v2 at e2

## circuit_score (both tasks): `circuit_score`

The generalizing circuit (Wang et al. 2024) resolves an intermediate entity state at a
non-final position — the bridge b at r1, or the value v1 at e1 — and the upper layers of
the last position read it from there. A memorizing model maps the input tokens to the
answer directly, without needing that state. `circuit_score` is the fraction of the
answer's dependence on the entity that is *mediated* by the state at that position
(causal mediation analysis):

    M(run)       = logit[t] - logit[t']  at the last position
    TE           = sum_i  M(clean_i) - M(counterfactual_i)                  (total effect)
    IE_l         = sum_i  M(clean_i) - M(clean_i with resid at (l, MID) from counterfactual_i)
    circuit_score = max over layers l of  clip(IE_l, 0) / max(TE, n * 1 nat)

over n = `n_examples` (default 300) training inferred examples (split `train_inferred`,
seeded subsample). MID is r1 (two_hop) or e1 (comparison). The counterfactual swaps the
token whose information the state must carry — the head h (two_hop) or e1 itself
(comparison) — for another entity chosen so that the intermediate state and the answer
change: a new bridge b' = tail(h', r1) with answer t' = tail(b', r2) != t, or a new value
v1' with a different comparison outcome t'. t and t' come from the atomic facts (all of
which are training data): no test label is used. The total effect is floored at 1 nat per
example so that a model whose answer does not yet depend on the entity (at initialization)
scores ~0 instead of a ratio of noise.

two_hop measures the effects on a chance-corrected metric instead of logit[t] - logit[t']:
M(run) = mean logit of the other entities - logit[t'] (all entities but t and t'), so that a
patch that only disrupts the clean answer does not count; an indirect effect below MIN_Z = 3
standard errors (from the per-example spread) counts as 0. Why, with the null measurements
(a random-answer memorizer scores ~0): docs/entity_tasks.md.

 `circuit_layer` is the maximizing layer;
`circuit_transfer` is the stricter top-1 version (the fraction of answers that become t'
under the same patch), which additionally needs the upper layers to apply r2 correctly to
the patched bridge and so trails test-ID accuracy.

Comparison subtracts a value-invariance control: e1 is the token at MID, so all of e1's
influence passes through the MID state and the plain mediated fraction is ~1 for any model,
a lookup included. With C_l = sum_i |M(clean_i) - M(clean_i with the MID state at layer l
from a counterfactual whose e1 has the same value)|, comparison's score is
max_l clip(IE_l - C_l, 0) / max(TE, n * 1 nat): a value-reading circuit ignores the
same-value swap, a lookup keyed on e1's identity does not.

Caveats: layer 0 (the token embedding) is excluded — for comparison the swapped e1 *is*
the token at MID, so patching it there is the whole counterfactual — and the last layer's
state at MID is read by nothing, so the maximum is over the middle layers and a 1-layer
model scores 0. A memorizing model that keys its lookup on the (h, r1) state at
r1 rather than on the tokens would also score high; the logit lens and the probes
(`lens_bridge_mrr_L*`, `probe_bridge_acc_L*`) tell whether that state holds the bridge
itself. It is one site and one kind of swap; `patch_*` columns give the whole
(layer, position) picture.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from interp.tasks.base import TaskData
from probes.logit_lens import LogitLensResult, logit_lens, residual_stack
from probes.patching import mediation

POS_FIRST, POS_MID, POS_LAST = 0, 1, 2


@dataclass(frozen=True)
class Counterfactual:
    """Examples that have a valid counterfactual: their clean and counterfactual inputs."""

    index: Int[Tensor, " batch"]  # into task.tokens
    clean_tokens: Int[Tensor, "batch pos"]
    tokens: Int[Tensor, "batch pos"]
    answer: Int[Tensor, " batch"]  # expected answer of the counterfactual input
    swapped_position: int


def sample_examples(
    task: TaskData, split: str = "train_inferred", n: int = 300, seed: int = 0
) -> Tensor:
    """A seeded subsample of a split (all of it when smaller), in index order."""
    index = task.splits[split]
    if len(index) > n:
        generator = torch.Generator().manual_seed(seed)
        index = index[torch.randperm(len(index), generator=generator)[:n]].sort().values
    return index


def pick(valid: Tensor, generator: torch.Generator) -> Tensor:
    """Per row, a uniformly random column where `valid`, or -1 where none is."""
    scores = torch.rand(valid.shape, generator=generator).masked_fill(~valid, -1.0)
    choice = scores.argmax(dim=1)
    return torch.where(valid.any(dim=1), choice, torch.full_like(choice, -1))


def counterfactuals(
    family, task: TaskData, index: Tensor, swap: str = "auto", seed: int = 0
) -> Counterfactual:
    """For each example, swap one token so that the intermediate state and the answer change.

    two_hop `swap="head"` (default): h -> h' with bridge b' = tail(h', r1) != b and answer
    tail(b', r2) != t. `swap="r2"`: r2 -> r2' with tail(b, r2') != t (bridge unchanged).
    comparison `swap="e1"` (default) or `"e2"`: the entity -> one whose value changes the
    outcome; `"e1_same_value"`: e1 -> another entity with the same value (same answer).
    The replacement is drawn uniformly (seeded) among the valid ones; examples without any
    are dropped.
    """
    swap = family.patch_swaps[0] if swap == "auto" else swap
    return family.swap_examples(task, index, swap, torch.Generator().manual_seed(seed))


# -- logit lens ------------------------------------------------------------------------------


def entity_logit_lens(family, model, task: TaskData, index: Tensor) -> LogitLensResult:
    """The logit lens at the family's targets (`lens_targets`: two_hop the bridge at r1 and
    the answer at the last position; comparison v1 at e1, v2 at e2, the answer)."""
    return logit_lens(model, task.tokens[index], family.lens_targets(task, index))


# -- the circuit score -----------------------------------------------------------------------


@dataclass(frozen=True)
class MediationScore:
    score: float
    #: layer index (0 = embeddings) where the mediated fraction is largest
    layer: int
    #: per-layer mediated fraction at the intermediate site (clipped to [0, 1])
    by_layer: Tensor
    #: per-layer fraction of top-1 answers that become the counterfactual answer
    transferred: Tensor
    n_examples: int


#: Floor of the mean total effect (nats of logit difference) in the circuit_score denominator.
MIN_TOTAL_EFFECT = 1.0
#: two_hop: indirect effects below this many standard errors (over examples) count as 0. With
#: the maximum taken over 3 middle layers, 3 SE keeps a false positive under ~1 % per checkpoint.
MIN_Z = 3.0


@torch.inference_mode()
def circuit_score(
    family, model, task: TaskData, n_examples: int = 300, seed: int = 0
) -> MediationScore:
    """The entity families' `circuit_score` (module docstring) on a seeded sample of training
    inferred facts; uses only training examples and atomic facts."""
    index = sample_examples(task, "train_inferred", n_examples, seed)
    return family.score_examples(model, task, index, seed)


def score_from_mediation(
    model,
    cf: Counterfactual,
    clean_answer: Tensor,
    *,
    metric=None,
    control: Tensor | None = None,
    min_z: float | None = None,
) -> MediationScore:
    """The score from the mediation of `cf` at MID: per layer, the indirect effect (minus a
    `control`, gated at `min_z` standard errors when given) over max(TE, n · 1 nat)."""
    n = len(cf.index)
    result = mediation(
        model, cf.clean_tokens, cf.tokens, clean_answer, cf.answer, POS_MID, metric=metric
    )
    mediated = result.indirect if control is None else result.indirect - control
    if min_z is not None:
        mediated = torch.where(
            mediated > min_z * result.indirect_se, mediated, torch.zeros_like(mediated)
        )
    by_layer = (mediated.clamp(min=0) / max(result.total, n * MIN_TOTAL_EFFECT)).clamp(max=1.0)
    # Layer 0 is the token embedding: for comparison the swapped token sits at MID itself, so
    # patching it there is the whole counterfactual (mediation 1 by construction); for two_hop
    # it is the unchanged r1 token (0). Either way it says nothing about a computed state.
    by_layer[0] = 0.0
    layer = int(by_layer.argmax())
    return MediationScore(float(by_layer[layer]), layer, by_layer, result.transferred, n)


def no_score() -> MediationScore:
    return MediationScore(float("nan"), -1, torch.zeros(0), torch.zeros(0), 0)


def make_entity_evaluator(
    family, n_examples: int = 300
) -> Callable[[Any, TaskData, dict], dict[str, float]]:
    """A training `Evaluator` that logs `circuit_score` (and its layer) at every checkpoint."""

    def evaluate(model, task: TaskData, by_split: dict) -> dict[str, float]:
        return score_columns(circuit_score(family, model, task, n_examples=n_examples))

    return evaluate


def score_columns(score: MediationScore) -> dict[str, float]:
    return {
        "circuit_score": score.score,
        "circuit_layer": float(score.layer),
        "circuit_transfer": float(score.transferred.max()) if score.n_examples else float("nan"),
    }


# -- probes ----------------------------------------------------------------------------------


def probe_data(
    family,
    model,
    task: TaskData,
    target: str,
    split: str = "train_inferred",
    max_examples: int = 2000,
):
    """(X [layer, example, d_model], y) for probing `target` at its site.

    Examples whose state at the site is a function of the same tokens are deduplicated
    (the r1 state depends only on (h, r1), the e1 state only on (attr, e1)), so held-out
    examples are never copies of training ones.
    """
    targets = family.probe_targets
    if target not in targets:
        raise ValueError(f"target: {target!r} is not one of {', '.join(targets)}")
    position = targets[target]
    index = task.splits[split]
    tokens, labels = task.tokens[index], task.extras[target][index]
    prefix = tokens[:, : position + 1]
    _, first = np.unique(prefix.numpy(), axis=0, return_index=True)
    keep = torch.as_tensor(np.sort(first))
    if len(keep) > max_examples:
        generator = torch.Generator().manual_seed(0)
        keep = keep[torch.randperm(len(keep), generator=generator)[:max_examples]].sort().values
    with torch.inference_mode():
        stack = residual_stack(model, tokens[keep])[:, :, position]
    return stack.float().numpy(), labels[keep].numpy()


@dataclass(frozen=True)
class ProbeResult:
    """Held-out probe accuracy per layer of one hidden target, with its baselines."""

    target: str
    accuracy: Tensor  # [layer]
    shuffled: Tensor  # [layer] the same probe on shuffled labels (chance)
    random: Tensor | None  # [layer] on a random-init model's states, if one was given


def entity_probes(
    family, model, task: TaskData, random_model=None, seed: int = 0
) -> tuple[ProbeResult, ...]:
    """Probe accuracy per layer for each hidden target of the family, with the baselines."""
    from probes.linear import probe_accuracy

    out = []
    for target in family.probe_targets:
        X, y = probe_data(family, model, task, target)
        X_random = (
            probe_data(family, random_model, task, target)[0] if random_model is not None else None
        )
        layers = range(X.shape[0])
        out.append(
            ProbeResult(
                target,
                torch.tensor([probe_accuracy(X[i], y, seed=seed).accuracy for i in layers]),
                torch.tensor(
                    [
                        probe_accuracy(X[i], y, seed=seed, shuffle_labels=True).accuracy
                        for i in layers
                    ]
                ),
                None
                if X_random is None
                else torch.tensor(
                    [probe_accuracy(X_random[i], y, seed=seed).accuracy for i in layers]
                ),
            )
        )
    return tuple(out)


# -- one checkpoint ----------------------------------------------------------------------------
