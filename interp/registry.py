"""Task families and the one registry that finds them by kind.

A task family (modular arithmetic, two-hop composition, comparison, and any to come) is
one `Family` object defined in one module, next to its config class. It provides its
config (a `TaskConfig` subclass tagged by `kind`), its presets, its data and splits, the
progress measures computed while training, and (through `circuits.families.base`) its
analysis parts, per-checkpoint analysis, phases and report. Nothing outside the family
modules and this registry names a task kind.

Registration reaches every process: `register(family)` runs when the family's module is
imported, and every run's config.json records that module (`family_module`), so a worker
process, a Ray task or a later `interp analyze` imports it again by name. Built-in
families are found by their module path below; installed plugins by the `interp.families`
entry-point group (`kind = "package.module"`).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from interp.config_base import ConfigError, TaskConfig, build_section, field_names

if TYPE_CHECKING:
    from torch import Tensor

    from interp.config import RunConfig
    from interp.tasks.base import TaskData

#: The families that ship with interp: kind -> the module that defines it.
BUILTIN: dict[str, str] = {
    "modular": "circuits.families.modular.family",
    "two_hop": "circuits.families.entity.two_hop",
    "comparison": "circuits.families.entity.comparison",
    "graph_walk": "circuits.families.graph_walk.family",
}
#: Family modules recorded in config.json (`family_module`) by earlier versions, before each
#: family became one package: old module path -> today's. Runs written then keep loading.
MOVED_MODULES: dict[str, str] = {
    "circuits.families.modular": "circuits.families.modular.family",
    "circuits.families.two_hop": "circuits.families.entity.two_hop",
    "circuits.families.comparison": "circuits.families.entity.comparison",
    "circuits.families.graph_walk": "circuits.families.graph_walk.family",
    # recorded for a few commits (2026-12-06) from the walk config's own module
    "circuits.families.graph_walk.task": "circuits.families.graph_walk.family",
}
#: The kind of a config section that names none (configs written before families had tags).
DEFAULT_KIND = "modular"
ENTRY_POINT_GROUP = "interp.families"

#: Every field of the single task config of earlier versions, with its default. A config.json
#: written then carries all of them; fields of other families are dropped on load when they
#: hold these defaults (they were ignored), and are errors otherwise.
LEGACY_TASK_DEFAULTS: dict[str, Any] = {
    "operation": "add",
    "p": 113,
    "train_frac": 0.3,
    "split_seed": 598,
    "n_entities": 100,
    "n_relations": 20,
    "out_degree": 10,
    "n_attributes": 10,
    "n_values": 20,
    "ood_frac": 0.05,
    "phi": 7.2,
    "test_id_frac": 0.1,
    "max_eval": 3000,
    "kb_file": "",
    "val_frac": 0.0,
    "shuffle_labels": False,
}


@dataclass(frozen=True)
class AnalysisPart:
    """One optional analysis of a family: its name (a Python identifier) becomes the
    `interp analyze --name-with-dashes` flag, `help` its help text. A part that is not
    `default` runs only when asked for (it costs more than the others together)."""

    name: str
    help: str
    default: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


#: Circuit discovery at every checkpoint (`circuits.analyses.circuit_timeline`), for every family
#: with a
#: clean/corrupt design (`Family.patching_design`); opt-in.
CIRCUITS_PART = AnalysisPart(
    "circuits",
    "Circuit discovery per checkpoint: edge scores, the smallest faithful circuit (opt-in).",
    default=False,
)


#: The local learning coefficient per checkpoint (`circuits.analyses.llc`); opt-in.
LLC_PART = AnalysisPart(
    "llc",
    "Local learning coefficient (SGLD) at up to 20 checkpoints, with its chain spread (opt-in).",
    default=False,
)


@dataclass(frozen=True)
class PatchingDesign:
    """Clean and corrupted inputs for activation patching and circuit discovery: `clean` and
    `corrupt` differ in the positions the family corrupts; the metric, read at `position`
    and described by `metric`, is the logit difference `answer` (the clean input's correct
    token) minus `corrupt_answer` (the corrupted input's) when the family gives one, else
    the log-probability of `answer` (`circuits.analyses.discovery.metric_values`)."""

    clean: Tensor
    corrupt: Tensor
    answer: Tensor
    position: int
    metric: str
    corrupt_answer: Tensor | None = None


class Family:
    """The interface of a task family (subclass it, set the class attributes, `register` it).

    The analysis side (`analyze`, phases, report sections) is declared by
    `circuits.families.base.AnalyzedFamily`, which most families subclass instead.
    """

    kind: ClassVar[str] = ""
    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    #: The optional analyses of `interp analyze`; none selected means all of them.
    parts: ClassVar[tuple[AnalysisPart, ...]] = ()
    #: One line for `interp presets` and the docs.
    title: ClassVar[str] = ""
    #: What the manifest's `best` pointer selects on when the task has a validation split
    #: (`interp.collapse.best_checkpoint`): "val_acc" (highest), or "val_loss" (lowest) for a
    #: family whose accuracy is capped by design.
    best_criterion: ClassVar[str] = "val_acc"

    def presets(self) -> dict[str, RunConfig]:
        """Named starting points, `interp train NAME`."""
        return {}

    def build_task(self, config: TaskConfig) -> TaskData:
        """All examples and their named splits, deterministically from the config."""
        raise NotImplementedError

    def forward(self, model, tokens):
        """The logits the loss and accuracy read, one row per label of the flattened labels:
        by default the answer at the last position (`interp.model.answer_logits`, the fast
        path). A next-token family returns the full-sequence causal logits, flattened."""
        from interp.model import answer_logits

        return answer_logits(model, tokens)

    def stacked_forward(self, model, stacked: dict[str, Tensor], tokens: Tensor) -> Tensor:
        """`forward` of K members at once (`interp.stacked`: ensemble members trained
        together): `stacked[name]` holds every member's parameter on a leading member axis,
        `tokens` is [member, batch, pos]; returns [member, rows, d_vocab_out]. By default
        `forward` under `torch.func.vmap` (`model` serves only as the architecture); a
        next-token family assigns `sequence_stacked_forward`, the batched forward."""
        from interp.model import vmapped_logits

        return vmapped_logits(self.forward, model, stacked, tokens)

    def sequence_stacked_forward(self, model, stacked: dict[str, Tensor], tokens: Tensor):
        """The full-sequence causal logits of every member, flattened per member
        (`interp.model.stacked_sequence_logits`; on CPU bit-identical to each member's own)."""
        from interp.model import stacked_sequence_logits

        return stacked_sequence_logits(model, stacked, tokens).flatten(1, 2)

    def sampler(self, task: TaskData, train, device):
        """Where training batches come from (`interp.sampling`): by default the training
        examples, whole or in reshuffled minibatches seeded by `train.seed`. A family with
        streamed data returns its own sampler, whose state is saved for an exact resume."""
        from interp.sampling import ShuffledBatches

        index = task.train_index
        return ShuffledBatches(
            task.tokens[index], task.labels[index], train.batch_size, train.seed, device
        )

    def training_loss(self, kind: str):
        """The training loss `(logits, labels) -> scalar` for `train.loss` (`interp.metrics`):
        cross-entropy or StableMax, in float64 by default (float32 saturates near loss 0, which
        hides the late phase of grokking). A family whose loss never nears 0 may use float32."""
        from interp import metrics

        if kind == "stablemax":
            return metrics.stablemax_cross_entropy_f64
        return metrics.cross_entropy_f64

    def collapse_rule(self, task: TaskData):
        """The rule the trainer and `interp analyze` detect collapses with (`interp.collapse`):
        by default the accuracy of the task's main training split. A family whose accuracy is
        capped by design watches a loss instead."""
        from interp.collapse import rule_for_splits

        return rule_for_splits(task.train_splits)

    #: AdamW's fused CPU/GPU kernel (one kernel for all tensors) instead of `foreach`: ~3x
    #: less optimizer time, but not bit-identical to torch's default loop (~1e-6 rounding), so
    #: only for families whose results are statistical (`interp.optimizer.make_optimizer`).
    fused_optimizer: ClassVar[bool] = False

    #: How `--circuits` scores edges (`circuits.analyses.discovery`): "refined" (attribution with
    #: `circuit_ig_steps` integrated-gradient steps, the top candidates re-scored by exact
    #: patching), "attribution" alone, or "exact" (one forward per edge).
    circuit_method: ClassVar[str] = "refined"
    circuit_ig_steps: ClassVar[int] = 5

    def patching_design(self, task: TaskData, n: int, seed: int = 0) -> PatchingDesign:
        """`n` clean/corrupt pairs from the task's held-out data (`PatchingDesign`)."""
        raise NotImplementedError(f"task family {self.kind!r} defines no clean/corrupt design")

    def evaluators(self, config: RunConfig) -> list:
        """Progress measures computed at every checkpoint while training
        (`interp.training.Evaluator`)."""
        return []

    def describe(self, config: TaskConfig) -> str:
        """The task's settings in one line."""
        return f"{self.kind}: " + ", ".join(
            f"{k} {v}" for k, v in config.to_dict().items() if k != "kind"
        )

    def analyze(
        self, run, parts: tuple[str, ...], steps: list[int], *, workers: int, progress: bool
    ):
        raise NotImplementedError(f"task family {self.kind!r} defines no analysis")


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Make `family` findable by its kind (call it at import time of the family's module)."""
    kind = family.kind
    if not kind or not kind.isidentifier():
        raise ValueError(
            f"family {type(family).__name__}: kind must be a Python identifier, got {kind!r}"
        )
    if family.config_class.kind != kind:
        raise ValueError(f"family {kind!r}: its config_class has kind {family.config_class.kind!r}")
    _FAMILIES[kind] = family
    return family


@functools.cache
def _installed_plugins() -> tuple:
    """The `interp.families` entry points of the installed packages, read once per process
    (scanning every package's metadata takes milliseconds, and presets are looked up often)."""
    return tuple(entry_points(group=ENTRY_POINT_GROUP))


def _plugin_modules(kind: str | None = None) -> list[str]:
    return [ep.value for ep in _installed_plugins() if kind is None or ep.name == kind]


def _import(module: str, why: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"{why}: cannot import the task family's module {module!r}: {exc}"
        ) from None


def get_family(kind: str, module: str | None = None) -> Family:
    """The family registered under `kind`, importing `module` (recorded in config.json), the
    built-in module or an installed plugin first when it is not registered yet."""
    module = MOVED_MODULES.get(module, module) if module else module
    if kind not in _FAMILIES:
        for source in (module, BUILTIN.get(kind), *_plugin_modules(kind)):
            if source:
                _import(source, f"task.kind {kind!r}")
            if kind in _FAMILIES:
                break
    if kind not in _FAMILIES:
        raise ConfigError(
            f"task.kind: unknown task family {kind!r}; known: {', '.join(sorted(known_kinds()))}"
        )
    return _FAMILIES[kind]


def family_of(config: Any) -> Family:
    """The family of a `RunConfig` or of its task section."""
    task = getattr(config, "task", config)
    return get_family(task.kind, type(task).__module__)


def known_kinds() -> set[str]:
    return set(_FAMILIES) | set(BUILTIN) | {ep.name for ep in _installed_plugins()}


def all_families() -> list[Family]:
    """Every built-in, installed and registered family, by kind."""
    for kind in sorted(known_kinds()):
        get_family(kind)
    return [_FAMILIES[kind] for kind in sorted(_FAMILIES)]


def task_config(kind: str = DEFAULT_KIND, **fields: Any) -> TaskConfig:
    """The config of family `kind` with these field values (e.g. in tests and notebooks)."""
    return get_family(kind).config_class(**fields)


def task_config_from_dict(raw: dict[str, Any], module: str | None = None) -> TaskConfig:
    """Parse a config file's task section: `kind` picks the family, the rest its fields."""
    raw = dict(raw)
    kind = raw.pop("kind", DEFAULT_KIND)
    if not isinstance(kind, str):
        raise ConfigError(f"task.kind: expected a string, got {kind!r}")
    cls = get_family(kind, module).config_class
    own = set(field_names(cls))
    for name in [n for n in raw if n not in own and n in LEGACY_TASK_DEFAULTS]:
        if raw[name] != LEGACY_TASK_DEFAULTS[name]:
            raise ConfigError(
                f"task.{name}: not a field of {kind} tasks; fields: {', '.join(sorted(own))}"
            )
        del raw[name]
    return build_section("task", cls, raw)
