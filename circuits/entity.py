"""Analyses of the entity tasks (two-hop composition, comparison) and their `circuit_score`.

Sites (positions of `interp.tasks.two_hop` / `interp.tasks.comparison`):

    two_hop     h (0)      r1 (1)   r2 (2, answer read here)    hidden state: bridge b at r1
    comparison  attr (0)   e1 (1)   e2 (2, answer read here)    hidden states: v1 at e1, v2 at e2

## circuit_score (both tasks)

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
M(run) = mean logit of the other entities - logit[t'] (all entities but t and t'). A patch
that only *disrupts* the clean answer (lowers logit[t]) moves the plain difference but not
this one; only a state that carries the new bridge b' lifts t' above the other entities.
This is the null: with the plain difference, a random-answer memorizer, which reads part of
the head's identity from the r1 state but has no bridge there, scored 0.17-0.21; with the
corrected metric it scores ~0 (docs/entity_tasks.md has the measurements). Its remaining
blips (one layer at one checkpoint, up to 0.13) were within 2 standard errors of 0, so an
indirect effect below MIN_Z = 3 standard errors (from the per-example spread) counts as 0.

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

from circuits.logit_lens import LensTarget, logit_lens, residual_stack
from circuits.patching import PatchingResult, causal_tracing, mediation
from interp.config import RunConfig, TaskConfig
from interp.metrics import accuracy, cross_entropy_f64
from interp.model import answer_logits
from interp.tasks.base import TaskData
from interp.tasks.vocab import EntityVocab

POS_FIRST, POS_MID, POS_LAST = 0, 1, 2
ANALYSIS_PARTS = frozenset({"logit_lens", "patching", "probes"})


@dataclass(frozen=True)
class Counterfactual:
    """Examples that have a valid counterfactual: their clean and counterfactual inputs."""

    index: Int[Tensor, " batch"]  # into task.tokens
    clean_tokens: Int[Tensor, "batch pos"]
    tokens: Int[Tensor, "batch pos"]
    answer: Int[Tensor, " batch"]  # expected answer of the counterfactual input
    swapped_position: int


def sample_examples(task: TaskData, split: str = "train_inferred", n: int = 300, seed: int = 0) -> Tensor:
    """A seeded subsample of a split (all of it when smaller), in index order."""
    index = task.splits[split]
    if len(index) > n:
        generator = torch.Generator().manual_seed(seed)
        index = index[torch.randperm(len(index), generator=generator)[:n]].sort().values
    return index


def _vocab(task: TaskData, kind: str) -> EntityVocab:
    if kind == "two_hop":
        n_e, n_r = task.extras["kb_tail"].shape
        return EntityVocab(kind, n_e, n_r)
    n_e, n_a = task.extras["kb_value"].shape
    n_values = len(task.token_names) - n_e - n_a - 4
    return EntityVocab(kind, n_e, n_a, n_values)


def task_kind(task: TaskData) -> str:
    return "two_hop" if "kb_tail" in task.extras else "comparison"


def counterfactuals(task: TaskData, index: Tensor, swap: str = "auto", seed: int = 0) -> Counterfactual:
    """For each example, swap one token so that the intermediate state and the answer change.

    two_hop `swap="head"` (default): h -> h' with bridge b' = tail(h', r1) != b and answer
    tail(b', r2) != t. `swap="r2"`: r2 -> r2' with tail(b, r2') != t (bridge unchanged).
    comparison `swap="e1"` (default) or `"e2"`: the entity -> one whose value changes the
    outcome; `"e1_same_value"`: e1 -> another entity with the same value (same answer).
    The replacement is drawn uniformly (seeded) among the valid ones; examples without any
    are dropped.
    """
    kind = task_kind(task)
    vocab = _vocab(task, kind)
    generator = torch.Generator().manual_seed(seed)
    tokens = task.tokens[index]
    cf_tokens, cf_answer, keep = tokens.clone(), torch.full((len(index),), -1), torch.zeros(len(index), dtype=torch.bool)
    if kind == "two_hop":
        swap = "head" if swap == "auto" else swap
        kb = task.extras["kb_tail"]
        h, r1, r2, b = (task.extras[k][index] for k in ("head", "r1", "r2", "bridge"))
        t = task.labels[index]
        if swap == "head":
            b_alt = kb[:, r1].T  # [batch, entity] bridge of (h', r1)
            t_alt = torch.where(b_alt >= 0, kb[b_alt.clamp(min=0), r2[:, None]], -1)
            valid = (b_alt >= 0) & (b_alt != b[:, None]) & (t_alt >= 0) & (t_alt != t[:, None])
            pick = _pick(valid, generator)
            cf_tokens[:, POS_FIRST] = vocab.entity(pick.clamp(min=0))
            cf_answer = t_alt.gather(1, pick.clamp(min=0)[:, None]).squeeze(1)
            position = POS_FIRST
        elif swap == "r2":
            t_alt = kb[b]  # [batch, relation]
            valid = (t_alt >= 0) & (t_alt != t[:, None])
            pick = _pick(valid, generator)
            cf_tokens[:, POS_LAST] = vocab.relation(pick.clamp(min=0))
            cf_answer = t_alt.gather(1, pick.clamp(min=0)[:, None]).squeeze(1)
            position = POS_LAST
        else:
            raise ValueError(f"swap: {swap!r} is not one of head, r2 for two_hop")
        keep = pick >= 0
    else:
        swap = "e1" if swap == "auto" else swap
        kb = task.extras["kb_value"]
        a, v1, v2 = (task.extras[k][index] for k in ("attribute", "v1", "v2"))
        if swap not in ("e1", "e2", "e1_same_value"):
            raise ValueError(f"swap: {swap!r} is not one of e1, e2, e1_same_value for comparison")
        other = v2 if swap != "e2" else v1
        sign = torch.sign(v1 - v2)
        v_alt = kb[:, a].T  # [batch, entity]
        sign_alt = torch.sign(other[:, None] - v_alt) if swap == "e2" else torch.sign(v_alt - other[:, None])
        if swap == "e1_same_value":  # another entity with e1's value: the answer must not change
            e1 = task.extras["e1"][index]
            valid = (v_alt == v1[:, None]) & (torch.arange(v_alt.shape[1])[None] != e1[:, None])
        else:
            valid = (v_alt >= 0) & (sign_alt != sign[:, None])
        pick = _pick(valid, generator)
        position = POS_LAST if swap == "e2" else POS_MID
        cf_tokens[:, position] = vocab.entity(pick.clamp(min=0))
        cf_answer = vocab.answer(sign_alt.gather(1, pick.clamp(min=0)[:, None]).squeeze(1))
        keep = pick >= 0
    return Counterfactual(index[keep], tokens[keep], cf_tokens[keep], cf_answer[keep], position)


def _pick(valid: Tensor, generator: torch.Generator) -> Tensor:
    """Per row, a uniformly random column where `valid`, or -1 where none is."""
    scores = torch.rand(valid.shape, generator=generator).masked_fill(~valid, -1.0)
    choice = scores.argmax(dim=1)
    return torch.where(valid.any(dim=1), choice, torch.full_like(choice, -1))


# -- logit lens ------------------------------------------------------------------------------


def entity_lens_targets(task: TaskData, index: Tensor) -> dict[str, LensTarget]:
    """two_hop: bridge at r1, answer at the last position; comparison: v1 at e1, v2 at e2, answer."""
    kind = task_kind(task)
    vocab = _vocab(task, kind)
    labels = task.labels[index]
    if kind == "two_hop":
        return {
            "bridge": LensTarget(POS_MID, task.extras["bridge"][index], vocab.entity_tokens),
            "answer": LensTarget(POS_LAST, labels, vocab.entity_tokens),
        }
    return {
        "v1": LensTarget(POS_MID, vocab.value(task.extras["v1"][index]), vocab.value_tokens),
        "v2": LensTarget(POS_LAST, vocab.value(task.extras["v2"][index]), vocab.value_tokens),
        "answer": LensTarget(POS_LAST, labels, vocab.answer_tokens),
    }


def entity_logit_lens(model, task: TaskData, index: Tensor):
    return logit_lens(model, task.tokens[index], entity_lens_targets(task, index))


# -- causal tracing and the circuit score ----------------------------------------------------


@torch.inference_mode()
def entity_causal_tracing(model, task: TaskData, index: Tensor, swap: str = "auto", seed: int = 0) -> PatchingResult:
    cf = counterfactuals(task, index, swap=swap, seed=seed)
    return causal_tracing(model, cf.clean_tokens, cf.tokens, cf.answer)


@dataclass(frozen=True)
class CircuitScore:
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
def circuit_score(model, task: TaskData, n_examples: int = 300, seed: int = 0) -> CircuitScore:
    """See the module docstring. Uses only training examples and atomic facts."""
    index = sample_examples(task, "train_inferred", n_examples, seed)
    two_hop = task_kind(task) == "two_hop"
    same = None
    if not two_hop:  # examples that also have a same-value control
        same = counterfactuals(task, index, swap="e1_same_value", seed=seed + 1)
        index = same.index
    cf = counterfactuals(task, index, swap="head" if two_hop else "e1", seed=seed)
    n = len(cf.index)
    if n == 0:
        return CircuitScore(float("nan"), -1, torch.zeros(0), torch.zeros(0), 0)
    clean_answer = task.labels[cf.index]
    metric = _specific_metric(task, clean_answer, cf.answer) if two_hop else None
    result = mediation(model, cf.clean_tokens, cf.tokens, clean_answer, cf.answer, POS_MID, metric=metric)
    mediated = result.indirect
    if same is not None:
        # Value invariance: what the e1 state carries beyond its value (identity, read by a
        # lookup) also moves the answer when e1 is swapped for an entity of the same value.
        keep = torch.isin(same.index, cf.index)
        control = mediation(model, cf.clean_tokens, same.tokens[keep], clean_answer, cf.answer, POS_MID)
        mediated = mediated - control.indirect_abs
    if two_hop:
        # Significance gate: an indirect effect within MIN_Z standard errors of 0 is noise (a
        # memorizer's checkpoints showed single-layer blips of up to 0.13 that were < 2 SE).
        mediated = torch.where(mediated > MIN_Z * result.indirect_se, mediated, torch.zeros_like(mediated))
    by_layer = (mediated.clamp(min=0) / max(result.total, n * MIN_TOTAL_EFFECT)).clamp(max=1.0)
    # Layer 0 is the token embedding: for comparison the swapped token sits at MID itself, so
    # patching it there is the whole counterfactual (mediation 1 by construction); for two_hop
    # it is the unchanged r1 token (0). Either way it says nothing about a computed state.
    by_layer[0] = 0.0
    layer = int(by_layer.argmax())
    return CircuitScore(float(by_layer[layer]), layer, by_layer, result.transferred, n)


def _specific_metric(task: TaskData, clean_answer: Tensor, counterfactual_answer: Tensor) -> Callable[[Tensor], Tensor]:
    """two_hop's chance-corrected metric: the mean logit of the other entities minus the
    counterfactual answer's logit (lower = the answer has moved specifically to t').

    The plain logit difference logit[t] − logit[t'] also falls when a patch merely disrupts
    the clean answer t, which any model that reads part of the head's identity at r1 shows
    (a random-answer memorizer scored ~0.2 with it). Against the other entities' mean, a
    disruption moves nothing; only a state that carries the bridge b' raises t' above them.
    """
    entities = _vocab(task, "two_hop").entity_tokens
    n_other = len(entities) - 2

    def metric(logits: Tensor) -> Tensor:
        logits = logits.double()
        t, t_alt = logits.gather(1, clean_answer[:, None]), logits.gather(1, counterfactual_answer[:, None])
        others = (logits[:, entities].sum(dim=1, keepdim=True) - t - t_alt) / n_other
        return (others - t_alt).squeeze(1)

    return metric


def make_entity_evaluator(
config: RunConfig | TaskConfig, n_examples: int = 300) -> Callable[[Any, TaskData, dict], dict[str, float]]:
    """A training `Evaluator` that logs `circuit_score` (and its layer) at every checkpoint."""

    def evaluate(model, task: TaskData, by_split: dict) -> dict[str, float]:
        result = circuit_score(model, task, n_examples=n_examples)
        return {
            "circuit_score": result.score,
            "circuit_layer": float(result.layer),
            "circuit_transfer": float(result.transferred.max()) if result.n_examples else float("nan"),
        }

    return evaluate


# -- probes ----------------------------------------------------------------------------------


def probe_data(model, task: TaskData, target: str, split: str = "train_inferred", max_examples: int = 2000):
    """(X [layer, example, d_model], y) for probing `target` at its site.

    Examples whose state at the site is a function of the same tokens are deduplicated
    (the r1 state depends only on (h, r1), the e1 state only on (attr, e1)), so held-out
    examples are never copies of training ones.
    """
    index = task.splits[split]
    tokens = task.tokens[index]
    if target == "bridge":
        position, labels = POS_MID, task.extras["bridge"][index]
    elif target == "v1":
        position, labels = POS_MID, task.extras["v1"][index]
    elif target == "v2":
        position, labels = POS_LAST, task.extras["v2"][index]
    else:
        raise ValueError(f"target: {target!r} is not one of bridge, v1, v2")
    prefix = tokens[:, : position + 1]
    _, first = np.unique(prefix.numpy(), axis=0, return_index=True)
    keep = torch.as_tensor(np.sort(first))
    if len(keep) > max_examples:
        generator = torch.Generator().manual_seed(0)
        keep = keep[torch.randperm(len(keep), generator=generator)[:max_examples]].sort().values
    with torch.inference_mode():
        stack = residual_stack(model, tokens[keep])[:, :, position]
    return stack.float().numpy(), labels[keep].numpy()


def entity_probes(model, task: TaskData, random_model=None, seed: int = 0) -> dict[str, float]:
    """Held-out probe accuracy per layer for each hidden target, with the baselines."""
    from probes.linear import probe_accuracy

    targets = ("bridge",) if task_kind(task) == "two_hop" else ("v1", "v2")
    out: dict[str, float] = {}
    for target in targets:
        X, y = probe_data(model, task, target)
        X_random = probe_data(random_model, task, target)[0] if random_model is not None else None
        for layer in range(X.shape[0]):
            out[f"probe_{target}_acc_L{layer}"] = probe_accuracy(X[layer], y, seed=seed).accuracy
            out[f"probe_{target}_shuffled_L{layer}"] = probe_accuracy(X[layer], y, seed=seed, shuffle_labels=True).accuracy
            if X_random is not None:
                out[f"probe_{target}_random_L{layer}"] = probe_accuracy(X_random[layer], y, seed=seed).accuracy
    return out


# -- one checkpoint, as table columns --------------------------------------------------------


def _normalize_parts(parts) -> set[str]:
    normalized = {p.replace("-", "_") for p in parts}
    unknown = normalized - ANALYSIS_PARTS
    if unknown:
        raise ValueError(f"parts: unknown analysis {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(ANALYSIS_PARTS))}")
    return normalized


def random_init_model(config: RunConfig):
    """The run's architecture at initialization (the probes' random-model baseline)."""
    from interp.model import build_model

    model = build_model(
        config.model, d_vocab=config.task.d_vocab, d_vocab_out=config.task.d_vocab_out, n_ctx=config.task.n_ctx
    )
    model.eval()
    return model


@torch.inference_mode()
def analyze_entity_checkpoint(
    model, task: TaskData, config: RunConfig, parts=frozenset(ANALYSIS_PARTS), *, random_model=None, n_examples: int = 300
) -> dict[str, float]:
    """Table columns for one checkpoint of an entity task.

    Always: `{split}_acc` for every split; `train_acc`/`train_loss` (all trained examples)
    and `test_acc`/`test_loss` (test-ID); `circuit_score`, `circuit_layer`, `circuit_transfer`.
    `logit_lens`: `lens_{target}_mrr_L{l}` (two_hop: bridge, answer; comparison: v1, v2, answer).
    `patching`: `patch_{site}_L{l}` = fraction of answers transferred by patching (layer l,
    site) from the head-swap (two_hop) / e1-swap (comparison) counterfactual, site in
    first/mid/last, and `patch_r2_last_L{l}` / `patch_e2_last_L{l}` for the second swap.
    `probes`: `probe_{target}_{acc,shuffled,random}_L{l}` (`random` needs `random_model`,
    built from the config when not given).
    """
    parts = _normalize_parts(parts)
    row: dict[str, float] = {}
    logits_of: dict[str, Tensor] = {}  # one forward per split, reused for the base columns
    for name in task.splits:
        tokens, labels = task.split(name)
        logits_of[name] = answer_logits(model, tokens) if len(tokens) else torch.zeros(0, model.cfg.d_vocab_out)
        row[f"{name}_acc"] = accuracy(logits_of[name], labels)
    # The table's base columns: train = all trained examples, test = test-ID (the trainer's test split).
    held_out = [s for s in task.splits if s not in task.train_splits][0]
    train_logits = torch.cat([logits_of[name] for name in task.train_splits])  # task.train_index's order
    for base, index, logits in (("train", task.train_index, train_logits), ("test", task.splits[held_out], logits_of[held_out])):
        row[f"{base}_acc"] = accuracy(logits, task.labels[index])
        row[f"{base}_loss"] = float(cross_entropy_f64(logits, task.labels[index]))
    score = circuit_score(model, task, n_examples=n_examples)
    row["circuit_score"], row["circuit_layer"] = score.score, float(score.layer)
    row["circuit_transfer"] = float(score.transferred.max()) if score.n_examples else float("nan")
    index = sample_examples(task, "train_inferred", n_examples)
    n_layers = model.cfg.n_layers
    if "logit_lens" in parts:
        lens = entity_logit_lens(model, task, index)
        for name in lens.names:
            for layer in range(n_layers + 1):
                row[f"lens_{name}_mrr_L{layer}"] = float(lens.mrr_of(name)[layer])
    if "patching" in parts:
        kind = task_kind(task)
        first_swap, second_swap = ("head", "r2") if kind == "two_hop" else ("e1", "e2")
        traced = entity_causal_tracing(model, task, index, swap=first_swap)
        for layer in range(n_layers + 1):
            for site, position in (("first", POS_FIRST), ("mid", POS_MID), ("last", POS_LAST)):
                row[f"patch_{site}_L{layer}"] = float(traced.transferred[layer, position])
        traced = entity_causal_tracing(model, task, index, swap=second_swap)
        for layer in range(n_layers + 1):
            row[f"patch_{second_swap}_last_L{layer}"] = float(traced.transferred[layer, POS_LAST])
    if "probes" in parts:
        if random_model is None:
            random_model = random_init_model(config)
        row.update(entity_probes(model, task, random_model))
    return row
