"""The modular-arithmetic family: `a b =` -> op(a, b) mod p (Power et al. 2022; ANCHORS §1).

Everything that is particular to this family is declared here: its config, its presets
(Nanda et al.'s recipe and faster variants), its data (`circuits.families.modular.task`), the
training progress measure (`circuits.families.modular.circuit_score.circuit_score`), the analysis
parts
(Fourier, attention, attribution: `circuits.pipeline.analyze`), the phases (memorization,
circuit formation, cleanup, stable) and the report's views. Heavy modules are imported
inside the methods, so importing this module (as `interp --help` does) stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from circuits.analyses.phases import MilestoneSpec
from circuits.families.base import AnalyzedFamily
from circuits.viz.views import ReportView
from interp.config import ModelConfig, RunConfig, TrainConfig
from interp.config_base import TaskConfig, check, is_prime  # noqa: F401 (is_prime: re-exported)
from interp.registry import CIRCUITS_PART, LLC_PART, AnalysisPart, register

Operation = Literal[
    "add", "sub", "mul", "div", "sum_sq", "quad", "quad_x", "cube_xy", "cubic", "div_or_sub"
]
#: Operations that need a multiplicative inverse mod p, hence a prime p.
NEEDS_PRIME: frozenset[str] = frozenset({"div", "div_or_sub"})


@dataclass(frozen=True)
class ModularTask(TaskConfig):
    """`a b =` -> op(a, b) mod p; all p^2 pairs split once by `split_seed`."""

    kind = "modular"
    operation: Operation = "add"
    p: int = 113
    train_frac: float = 0.3
    #: Fraction of the held-out pairs set aside as a validation split (`val`) for early
    #: stopping and the `best` checkpoint; the rest stay `test`. 0 = no validation split
    #: (the split is then exactly the one of earlier versions). The training pairs never
    #: change, so a recipe's training set is the same with or without it.
    val_frac: float = 0.0
    #: Train on a seeded random subset of this many of the training pairs (0 = all of them):
    #: subsets are nested (a smaller one lies inside a larger one of the same split), the
    #: held-out pairs do not change, and the pairs left out are in no split. With
    #: `train.init_from` this is how a grokked model is fine-tuned on less data (ungrokking).
    train_subset: int = 0
    #: Which seeded subset (`train_subset`): other values draw other nested subsets of the same
    #: training pairs (seeds of an ungrokking sweep); 0 = the original draw.
    subset_seed: int = 0

    def __post_init__(self) -> None:
        check(self.p >= 3, "task.p", f"must be an integer >= 3, got {self.p}")
        check(
            self.p <= 2048, "task.p", f"must be <= 2048 (p^2 inputs are enumerated), got {self.p}"
        )
        if self.operation in NEEDS_PRIME:
            check(
                is_prime(self.p),
                "task.p",
                f"operation {self.operation!r} needs a prime modulus (it divides by y), got "
                f"{self.p}",
            )
        check(
            0.0 < self.train_frac < 1.0,
            "task.train_frac",
            f"must be in the open interval (0, 1), got {self.train_frac}",
        )
        check(
            0.0 <= self.val_frac < 1.0, "task.val_frac", f"must be in [0, 1), got {self.val_frac}"
        )
        check(self.train_subset >= 0, "task.train_subset", f"must be >= 0, got {self.train_subset}")
        check(self.subset_seed >= 0, "task.subset_seed", f"must be >= 0, got {self.subset_seed}")

    @property
    def d_vocab(self) -> int:
        """The p numbers plus `=`."""
        return self.p + 1

    @property
    def d_vocab_out(self) -> int:
        """The p residues."""
        return self.p

    @property
    def n_ctx(self) -> int:
        return 3

    @property
    def equals_token(self) -> int:
        return self.p


def _presets() -> dict[str, RunConfig]:
    """`mod-add` is Nanda et al.'s mainline recipe exactly; the others: `interp.presets`."""
    nanda = ModelConfig(
        n_layers=1,
        d_model=128,
        n_heads=4,
        d_head=32,
        d_mlp=512,
        act_fn="relu",
        normalization="none",
        seed=999,
    )
    nanda_train = TrainConfig(
        steps=40_000,
        lr=1e-3,
        weight_decay=1.0,
        beta1=0.9,
        beta2=0.98,
        warmup_steps=10,
        batch_size=0,
        ckpt_every=100,
        ckpt_log_until=1000,
    )
    presets = {
        "mod-add": RunConfig(
            name="mod-add",
            task=ModularTask(operation="add", p=113, train_frac=0.3, split_seed=598),
            model=nanda,
            train=nanda_train,
        ),
        # The same recipe, smaller task, 3x the learning rate, denser checkpoints.
        "demo": RunConfig(
            name="demo",
            task=ModularTask(operation="add", p=59, train_frac=0.4, split_seed=598),
            model=nanda,
            train=replace(nanda_train, steps=1_500, lr=3e-3, ckpt_every=25, ckpt_log_until=200),
        ),
    }
    presets["mod-add-fast"] = RunConfig(
        name="mod-add-fast",
        task=replace(presets["mod-add"].task, val_frac=0.1),
        model=nanda,
        train=TrainConfig(
            steps=1_500,
            lr=3e-3,
            weight_decay=1.0,
            beta1=0.9,
            beta2=0.98,
            warmup_steps=10,
            batch_size=0,
            grad_filter="ema",
            grokfast_alpha=0.98,
            grokfast_lamb=2.0,
            loss="cross_entropy",
            orthogonal_grad=True,
            weight_norm_floor=1.25,
            ckpt_every=25,
            ckpt_log_until=100,
            # Adam's step per unit gradient keeps rising after grokking until a direction
            # overshoots (late loss spikes, docs/benchmarks.md): lr / 10 once validated.
            lr_decay_at_val_acc=0.99,
            lr_decay_factor=0.1,
            stop_at_val_acc=0.99,
            stop_patience=4,
        ),
    )
    presets["demo-memorize"] = RunConfig(
        name="demo-memorize",
        task=replace(presets["demo"].task, shuffle_labels=True),
        model=nanda,
        train=replace(presets["demo"].train, weight_decay=0.0),
    )
    return presets


# Phases of this family (`circuits.analyses.phases`):
#: memorization: [0, memorized) — until train accuracy first reaches 99 %.
#: circuit formation: [memorized, cleanup_start) — train fitted, test accuracy still < 50 %.
#: cleanup: [cleanup_start, generalized) — test accuracy rising from 50 % to 99 %.
#: stable: from `generalized` until the first checkpoint of a later collapse, if any.
MODULAR_MILESTONES = (
    MilestoneSpec("memorized", "train fitted", "train_acc", 0.99),
    MilestoneSpec("cleanup_start", "test acc ≥ 50%", "test_acc", 0.5, after="memorized"),
    MilestoneSpec("generalized", "test acc ≥ 99%", "test_acc", 0.99, after="cleanup_start"),
)
MODULAR_SPANS = (
    ("memorization", None, "memorized"),
    ("circuit_formation", "memorized", "cleanup_start"),
    ("cleanup", "cleanup_start", "generalized"),
    ("stable", "generalized", None),
)


class ModularFamily(AnalyzedFamily):
    kind = "modular"
    config_class = ModularTask
    title = "binary operations mod p (grokking)"
    parts = (
        AnalysisPart(
            "fourier",
            "Fourier norms, neuron clusters, key frequencies, restricted/excluded loss, Gini.",
        ),
        AnalysisPart("attention", "Attention from the answer position, per head."),
        AnalysisPart("attribution", "Direct logit attribution per component."),
        CIRCUITS_PART,
        LLC_PART,
    )

    timeline_note = (
        "Phase boundaries are computed from the metrics: memorization until train accuracy reaches "
        "99 %, "
        "circuit formation until test accuracy reaches 50 %, cleanup until it reaches 99 %. The "
        "circuit score "
        "uses training examples only; the restricted loss keeps only the key-frequency part of the "
        "logits "
        "(test set), the excluded loss removes it (train set)."
    )

    def presets(self) -> dict[str, RunConfig]:
        return _presets()

    def build_task(self, config: ModularTask):
        from circuits.families.modular.task import build_modular

        return build_modular(config)

    def evaluators(self, config: RunConfig) -> list:
        from circuits.families.modular.circuit_score import make_modular_evaluator

        return [make_modular_evaluator(config.task.operation, config.task.p)]

    def patching_design(self, task, n: int, seed: int = 0):
        """Clean: `n` training pairs (seeded; training pairs so that a memorizing checkpoint has
        a gap to explain too). Corrupt: both operands resampled, uniformly among the pairs with
        another answer. Metric: logit(clean answer) − logit(corrupted pair's answer)."""
        import torch

        from interp.registry import PatchingDesign

        generator = torch.Generator().manual_seed(seed)
        index = task.train_index
        clean = index[torch.randperm(len(index), generator=generator)[:n]]
        other = torch.randint(0, len(task.labels), (len(clean),), generator=generator)
        while bool((same := task.labels[other] == task.labels[clean]).any()):
            other[same] = torch.randint(
                0, len(task.labels), (int(same.sum()),), generator=generator
            )
        metric = "logit(answer) − logit(corrupted answer) at '='; corrupt = both operands resampled"
        return PatchingDesign(
            task.tokens[clean],
            task.tokens[other],
            task.labels[clean],
            -1,
            metric,
            corrupt_answer=task.labels[other],
        )

    def describe(self, config: ModularTask) -> str:
        return (
            f"{config.operation} mod p={config.p}, train fraction {config.train_frac}"
            + (f", validation fraction {config.val_frac}" if config.val_frac else "")
            + (
                f", trained on {config.train_subset} of the training pairs"
                if config.train_subset
                else ""
            )
            + (", shuffled labels" if config.shuffle_labels else "")
        )

    # -- analysis --------------------------------------------------------------------------
    milestones = MODULAR_MILESTONES
    spans = MODULAR_SPANS
    #: Names of the three input positions, for figures.
    position_names = ("a", "b", "=")

    def analyze(self, run, parts, steps, *, workers, progress, figures=True):
        from circuits.families.modular.analysis import analyze_modular_run

        return analyze_modular_run(
            run, self, parts, steps, workers=workers, progress=progress, figures=figures
        )

    def summary_facts(self, result) -> dict[str, Any]:
        return {"key_frequencies": list(result.key_frequencies)}

    def summary_lines(self, info) -> list[str]:
        return [f"key frequencies: {info['key_frequencies'] or 'none found'}"]

    def report_facts(self, result) -> list[tuple[str, str]]:
        return [
            ("key frequencies", ", ".join(f"k={k}" for k in result.key_frequencies) or "none found")
        ]

    def report_views(self, result, context) -> list[ReportView]:
        from circuits.families.modular.report import modular_views

        return modular_views(result, context)


FAMILY = register(ModularFamily())
