"""What the two entity families (two-hop composition, comparison; Wang et al. 2024,
ANCHORS §2) share: the config fields of a knowledge base and its split, the analysis parts
(logit lens, causal tracing, probes), the circuit score by causal mediation
(`circuits.families.entity.measures`), the phases and the report views.
`circuits.families.entity.two_hop` and
`circuits.families.entity.comparison` add their own fields, swaps and targets.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from circuits.families.base import AnalyzedFamily
from circuits.viz.views import ReportView
from interp.config_base import TaskConfig, check
from interp.registry import CIRCUITS_PART, LLC_PART, AnalysisPart


@dataclass(frozen=True)
class EntityTask(TaskConfig):
    """A knowledge base of entities (random, or read from `kb_file`) and its split."""

    #: Number of entities (ignored with kb_file).
    n_entities: int = 100
    #: Fraction of atomic facts (two_hop) or of entities per attribute (comparison) that are OOD.
    ood_frac: float = 0.05
    #: Inferred facts in training / ID atomic facts (Wang et al.'s phi).
    phi: float = 7.2
    #: Fraction of the ID inferred facts held out as test-ID (capped at max_eval).
    test_id_frac: float = 0.1
    #: Cap on the size of each held-out split (test_id, test_ood), sampled with split_seed.
    max_eval: int = 3000
    #: Path of a JSONL/CSV knowledge base (`circuits.families.entity.kb_file`); "" = a random
    #: synthetic
    #: one. With a file, the sizes come from it.
    kb_file: str = ""

    def __post_init__(self) -> None:
        check(
            0.0 <= self.ood_frac < 1.0, "task.ood_frac", f"must be in [0, 1), got {self.ood_frac}"
        )
        check(self.phi > 0, "task.phi", f"must be > 0, got {self.phi}")
        check(
            0.0 < self.test_id_frac < 1.0,
            "task.test_id_frac",
            f"must be in (0, 1), got {self.test_id_frac}",
        )
        check(self.max_eval >= 1, "task.max_eval", f"must be >= 1, got {self.max_eval}")
        if not self.kb_file:
            check(self.n_entities >= 2, "task.n_entities", f"must be >= 2, got {self.n_entities}")
            self._validate_sizes()

    def _validate_sizes(self) -> None:
        """The family's own size fields (not used with a kb_file)."""

    def entity_sizes(self) -> tuple[int, int, int]:
        """(n_entities, n_relations or n_attributes, n_values; 0 without values)."""
        raise NotImplementedError

    @property
    def d_vocab(self) -> int:
        """One token per entity, relation/attribute and value, plus the specials
        (`circuits.families.entity.vocab`)."""
        from circuits.families.entity.vocab import EntityVocab

        return EntityVocab.for_config(self).d_vocab

    @property
    def d_vocab_out(self) -> int:
        """The full vocabulary, so input and output embeddings can be tied."""
        return self.d_vocab

    @property
    def n_ctx(self) -> int:
        return 3


_LENS_NOTE = (
    "Each layer's residual stream read through the final norm and unembedding; the mean reciprocal "
    "rank of the target among its candidates (1 = always ranked first)."
)


class EntityFamily(AnalyzedFamily):
    """Shared by two_hop and comparison; subclasses set the class attributes below and
    implement `build`, `vocab`, `counterfactuals`, `lens_targets` and `mediation_score`."""

    parts = (
        AnalysisPart(
            "logit_lens", "Rank/MRR of the intermediate entity or attribute values per layer."
        ),
        AnalysisPart("patching", "Causal tracing per (layer, position)."),
        AnalysisPart(
            "probes",
            "Linear probes for the intermediate entity / values per layer, with baselines.",
        ),
        CIRCUITS_PART,
        LLC_PART,
    )

    #: The counterfactual swaps of causal tracing: the first is the circuit score's.
    patch_swaps: ClassVar[tuple[str, str]] = ("", "")
    #: Hidden targets probed: name (an `extras` column) -> position of its state.
    probe_targets: ClassVar[dict[str, int]] = {}
    #: Accuracy of guessing on test-ID; test-ID "leaves chance" at chance + 0.1.
    chance: ClassVar[float] = 0.0
    #: The intermediate the report follows over training (bridge, v1).
    intermediate: ClassVar[str] = ""
    #: Names of the three input positions, for figures.
    position_names: ClassVar[tuple[str, str, str]] = ("first", "mid", "last")

    timeline_note = (
        "Phases read generalization on test-ID (ANCHORS §2): memorization until test-ID accuracy "
        "leaves chance "
        "(10 points above it), generalization until it reaches 95 %, then stable until a collapse. "
        "Dashed "
        "lines also mark when the atomic facts and the training inferred facts are learned (99 %). "
        "The circuit "
        "score uses training examples only."
    )

    # -- data ------------------------------------------------------------------------------
    def build(self, config: EntityTask):
        raise NotImplementedError

    def build_task(self, config: EntityTask):
        task = self.build(config)
        return _shuffle_inferred_answers(task, config.split_seed) if config.shuffle_labels else task

    def vocab(self, task):
        raise NotImplementedError

    # -- the family's analyses (`circuits.families.entity.measures`)
    # -------------------------------------------
    def swap_examples(self, task, index, swap: str, generator):
        raise NotImplementedError

    def lens_targets(self, task, index) -> dict:
        raise NotImplementedError

    def score_examples(self, model, task, index, seed: int):
        """The `circuit_score` (a `measures.MediationScore`) on the training examples `index`."""
        raise NotImplementedError

    def patching_design(self, task, n: int, seed: int = 0):
        """Clean: `n` training inferred facts (seeded). Corrupt: the family's first swap
        (`patch_swaps`: two_hop the head entity h -> h' with another bridge and answer,
        comparison e1 -> an entity whose value flips the outcome), as in causal tracing.
        Metric: logit(clean answer) − logit(corrupted input's answer) at the last position."""
        from circuits.families.entity.measures import counterfactuals, sample_examples
        from interp.registry import PatchingDesign

        index = sample_examples(task, "train_inferred", n, seed)
        cf = counterfactuals(self, task, index, seed=seed)
        metric = (
            f"logit(answer) − logit(corrupted answer) at the last position; "
            f"corrupt = {self.patch_swaps[0]} swapped"
        )
        return PatchingDesign(
            cf.clean_tokens, cf.tokens, task.labels[cf.index], -1, metric, corrupt_answer=cf.answer
        )

    def evaluators(self, config) -> list:
        from circuits.families.entity.measures import make_entity_evaluator

        return [make_entity_evaluator(self)]

    def analyze(self, run, parts, steps, *, workers, progress, figures=True):
        from circuits.families.entity.analysis import analyze_entity_run

        return analyze_entity_run(
            run, self, parts, steps, workers=workers, progress=progress, figures=figures
        )

    def describe(self, config: EntityTask) -> str:
        if config.kb_file:
            return (
                f"knowledge base {config.kb_file}, phi {config.phi}, OOD fraction {config.ood_frac}"
            )
        sizes = ", ".join(
            f"{k} {v}"
            for k, v in config.to_dict().items()
            if k.startswith("n_") or k in ("out_degree",)
        )
        return f"{sizes}, phi {config.phi}, OOD fraction {config.ood_frac}" + (
            ", shuffled labels" if config.shuffle_labels else ""
        )

    @property
    def milestones(self):  # type: ignore[override]
        """Atomic facts learned (train_atomic ≥ 99 %), training inferred facts learned
        (train_inferred ≥ 99 %), and test-ID leaving chance (≥ chance + 10 points), reaching
        50 % and 95 % (ANCHORS §2 reads generalization on test-ID). Test-ID may rise while
        training accuracy still climbs, so the test-ID milestones do not wait for the
        training ones. Spans: memorization until test-ID leaves chance, generalization until
        it reaches 95 %, then stable until a collapse."""
        from circuits.analyses.phases import MilestoneSpec

        return (
            MilestoneSpec("atomic_learned", "atomic facts learned", "train_atomic_acc", 0.99),
            MilestoneSpec("inferred_learned", "train inferred learned", "train_inferred_acc", 0.99),
            MilestoneSpec(
                "left_chance", "test-ID leaves chance", "test_id_acc", min(self.chance + 0.1, 1.0)
            ),
            MilestoneSpec("half", "test-ID ≥ 50%", "test_id_acc", 0.5, after="left_chance"),
            MilestoneSpec("generalized", "test-ID ≥ 95%", "test_id_acc", 0.95, after="half"),
        )

    fit_milestone = "inferred_learned"
    spans = (
        ("memorization", None, "left_chance"),
        ("generalization", "left_chance", "generalized"),
        ("stable", "generalized", None),
    )

    def summary_facts(self, result) -> dict[str, Any]:
        # summary.json of entity runs has always carried an (empty) key-frequency list, which
        # readers of those files and the golden records (tests/fixtures/golden) expect.
        return {"key_frequencies": []}

    def summary_lines(self, info: dict[str, Any]) -> list[str]:
        from interp.metrics import format_accuracy

        sizes = info.get("split_sizes", {})
        return [
            "per split: "
            + ", ".join(
                f"{k} {format_accuracy(v, sizes.get(k))}"
                for k, v in info.get("final_splits", {}).items()
            )
        ]

    def report_views(self, result, context) -> list[ReportView]:
        from circuits.families.entity import figures as E
        from circuits.viz.views import attention_view

        return [
            ReportView(
                "Intermediate entity per layer",
                lambda: E.plot_entity_measures(result, self.intermediate),
            ),
            attention_view(result, context),
            ReportView(
                "Logit lens", lambda: E.plot_logit_lens(result, self.position_names), _LENS_NOTE
            ),
            ReportView("Causal tracing", lambda: E.plot_causal_tracing(result)),
            ReportView(
                "Discovered circuit",
                omitted="circuit discovery per checkpoint is not implemented yet; "
                "this section will show the discovered circuit",
            ),
        ]


def _shuffle_inferred_answers(task, seed: int):
    """Entity memorization control: each training inferred fact gets an answer drawn at random
    from the answers of that split, so composing or comparing atomic facts no longer helps."""
    import torch

    index = task.splits["train_inferred"]
    answers = torch.unique(task.labels[index])
    generator = torch.Generator().manual_seed(seed + 1)
    labels = task.labels.clone()
    labels[index] = answers[torch.randint(len(answers), (len(index),), generator=generator)]
    return replace(task, labels=labels)
