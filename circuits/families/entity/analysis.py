"""The entity families' analysis: each checkpoint's accuracies, circuit score and requested
parts (logit lens, causal tracing, probes) as a frozen `EntityCheckpoint` whose table row is
derived from its typed fields (`circuits.families.entity.measures` holds the measures,
`probes/` the read-outs), and `analyze_entity_run`, the map over a run's checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from circuits.families.entity.measures import (
    POS_FIRST,
    POS_LAST,
    POS_MID,
    MediationScore,
    ProbeResult,
    circuit_score,
    counterfactuals,
    entity_logit_lens,
    entity_probes,
    sample_examples,
    score_columns,
)
from interp.metrics import accuracy, cross_entropy_f64
from interp.model import answer_logits
from interp.tasks.base import TaskData
from probes.logit_lens import LogitLensResult


@dataclass(frozen=True)
class TracingResult:
    """Fraction of answers moved to the counterfactual's by patching (layer, position)."""

    swap: str
    transferred: Tensor  # [layer, pos]


@dataclass(frozen=True)
class EntityCheckpoint:
    """Everything `interp analyze` computes for one checkpoint of an entity task.

    `row` is the table's view of it (written to CSV at the edge, never parsed back):
    `{split}_acc` for every split; `train_acc`/`train_loss` (all trained examples) and
    `test_acc`/`test_loss` (the first held-out split, test-ID); `circuit_score`,
    `circuit_layer`, `circuit_transfer`; `lens_{target}_mrr_L{l}`; `patch_{site}_L{l}`
    (site first/mid/last, first swap) and `patch_{swap}_last_L{l}` (second swap);
    `probe_{target}_{acc,shuffled,random}_L{l}`.
    """

    step: int
    accuracy: dict[str, float]
    loss: dict[str, float]
    score: MediationScore
    lens: LogitLensResult | None = None
    tracing: tuple[TracingResult, ...] = ()
    probes: tuple[ProbeResult, ...] = ()
    #: mean attention pattern [layer, head, query_pos, key_pos] (the circuitsvis view), at the
    #: checkpoints a slider may show
    attention_pattern: Tensor | None = None
    row: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "row", self._row())

    def _row(self) -> dict[str, Any]:
        row: dict[str, Any] = {"step": self.step}
        row.update({f"{k}_acc": v for k, v in self.accuracy.items()})
        row.update({f"{k}_loss": v for k, v in self.loss.items()})
        row.update(score_columns(self.score))
        if self.lens is not None:
            for name in self.lens.names:
                for layer, value in enumerate(self.lens.mrr_of(name).tolist()):
                    row[f"lens_{name}_mrr_L{layer}"] = value
        for i, traced in enumerate(self.tracing):
            for layer in range(traced.transferred.shape[0]):
                if i == 0:
                    for site, position in (
                        ("first", POS_FIRST),
                        ("mid", POS_MID),
                        ("last", POS_LAST),
                    ):
                        row[f"patch_{site}_L{layer}"] = float(traced.transferred[layer, position])
                else:
                    row[f"patch_{traced.swap}_last_L{layer}"] = float(
                        traced.transferred[layer, POS_LAST]
                    )
        for probe in self.probes:
            for layer in range(len(probe.accuracy)):
                row[f"probe_{probe.target}_acc_L{layer}"] = float(probe.accuracy[layer])
                row[f"probe_{probe.target}_shuffled_L{layer}"] = float(probe.shuffled[layer])
                if probe.random is not None:
                    row[f"probe_{probe.target}_random_L{layer}"] = float(probe.random[layer])
        return row


def random_init_model(config):
    """The run's architecture at initialization (the probes' random-model baseline)."""
    from interp.model import build_model

    model = build_model(
        config.model,
        d_vocab=config.task.d_vocab,
        d_vocab_out=config.task.d_vocab_out,
        n_ctx=config.task.n_ctx,
    )
    model.eval()
    return model


@torch.inference_mode()
def analyze_entity_checkpoint(
    family,
    model,
    task: TaskData,
    config,
    parts=("logit_lens", "patching", "probes"),
    *,
    random_model=None,
    n_examples: int = 300,
    step: int = -1,
) -> EntityCheckpoint:
    """Every requested part for one checkpoint of an entity task (see `EntityCheckpoint`).
    `probes` needs a random-init baseline model, built from the config when not given."""
    unknown = set(parts) - {p.name for p in family.parts}
    if unknown:
        raise ValueError(
            f"parts: unknown analysis {sorted(unknown)[0]!r}; allowed: "
            f"{', '.join(p.name for p in family.parts)}"
        )
    accuracies, losses = {}, {}
    logits_of: dict[str, Tensor] = {}  # one forward per split, reused for the base columns
    for name in task.splits:
        tokens, labels = task.split(name)
        logits_of[name] = (
            answer_logits(model, tokens) if len(tokens) else torch.zeros(0, model.cfg.d_vocab_out)
        )
        accuracies[name] = accuracy(logits_of[name], labels)
    # The table's base columns: train = all trained examples, test = test-ID (the trainer's test
    # split).
    held_out = task.held_out_splits[0]
    train_logits = torch.cat(
        [logits_of[name] for name in task.train_splits]
    )  # task.train_index's order
    for base, index, logits in (
        ("train", task.train_index, train_logits),
        ("test", task.splits[held_out], logits_of[held_out]),
    ):
        accuracies[base] = accuracy(logits, task.labels[index])
        losses[base] = float(cross_entropy_f64(logits, task.labels[index]))
    score = circuit_score(family, model, task, n_examples=n_examples)
    index = sample_examples(task, "train_inferred", n_examples)
    lens = entity_logit_lens(family, model, task, index) if "logit_lens" in parts else None
    tracing: tuple[TracingResult, ...] = ()
    if "patching" in parts:
        from probes.patching import causal_tracing

        traced = []
        for swap in family.patch_swaps:
            cf = counterfactuals(family, task, index, swap=swap)
            traced.append(
                TracingResult(
                    swap, causal_tracing(model, cf.clean_tokens, cf.tokens, cf.answer).transferred
                )
            )
        tracing = tuple(traced)
    probes: tuple[ProbeResult, ...] = ()
    if "probes" in parts:
        baseline = random_model if random_model is not None else random_init_model(config)
        probes = entity_probes(family, model, task, baseline)
    return EntityCheckpoint(step, accuracies, losses, score, lens, tracing, probes)


def analyze_entity_run(
    run,
    family,
    parts: tuple[str, ...],
    steps: list[int],
    *,
    workers: int,
    progress: bool,
    figures: bool = True,
):
    """`analyze_entity_checkpoint` over every checkpoint (`circuits.pipeline.analyze_each`),
    plus, with `figures`, the mean attention pattern at the checkpoints a slider may show (the
    circuit graph of these families is left to circuit discovery)."""
    from dataclasses import replace

    from circuits.analyses.attention import mean_attention_pattern, pattern_sample
    from circuits.pipeline.analyze import analyze_each
    from circuits.pipeline.figure_steps import SliderSteps

    task = run.task
    pattern_tokens = pattern_sample(task.tokens)
    slider_steps = SliderSteps(steps, family.milestones) if figures else None

    def make_analyze_one():
        # The probes' random-init baseline: one model per worker (hooks are per model object).
        random_model = random_init_model(run.config) if "probes" in parts else None

        def analyze_one(model, step: int):
            result = analyze_entity_checkpoint(
                family, model, task, run.config, parts, random_model=random_model, step=step
            )
            if slider_steps is not None and slider_steps.wants(step, result.row):
                result = replace(
                    result, attention_pattern=mean_attention_pattern(model, pattern_tokens)
                )
            return result

        return analyze_one

    return analyze_each(
        run,
        family,
        parts,
        steps,
        make_analyze_one,
        workers=workers,
        progress=progress,
        slider_steps=slider_steps,
        position_labels=family.position_names,
    )
