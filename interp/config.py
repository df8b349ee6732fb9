"""Run configuration: frozen dataclasses that fully describe a run.

A run is `RunConfig(task, model, train)`. `task` is the config of one task family
(`interp.registry`: its own fields only, tagged by `kind`); `model` and `train` are the
same for every family. Every field is settable from the command line as
`section.field=value` (or a bare `field=value` when the name is unique); `task.kind=...`
switches the family, keeping only the fields both families have.
`__post_init__` only validates; derived values are properties. `to_dict`/`from_dict`
round-trip exactly, and `from_dict` rejects unknown fields by name, so a typo in a
config file is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from interp.config_base import ConfigError, TaskConfig, build_section, check, coerce, field_names
from interp.registry import get_family, task_config, task_config_from_dict

Normalization = Literal["none", "LN"]
ActFn = Literal["relu", "gelu", "gelu_new", "silu"]
InitMode = Literal["gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]
GradFilter = Literal["none", "ema", "ma"]
Loss = Literal["cross_entropy", "stablemax"]
Device = Literal["cpu", "cuda", "auto"]
Retention = Literal["all", "events", "final"]
LrSchedule = Literal["constant", "cosine"]

_check = check
__all__ = [
    "ConfigError",
    "TaskConfig",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "task_config",
    "load_config_file",
    "resolve_key",
    "all_keys",
]


@dataclass(frozen=True)
class ModelConfig:
    """Transformer shape. Vocabulary sizes and context length come from the task."""

    n_layers: int = 1
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    act_fn: ActFn = "relu"
    normalization: Normalization = "none"
    tied_embeddings: bool = False
    init_mode: InitMode = "gpt2"
    #: std of the normal init for `gpt2` mode; 0 means TransformerLens's default 0.8/sqrt(d_model).
    init_std: float = 0.0
    seed: int = 999

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads", "d_head", "d_mlp"):
            value = getattr(self, name)
            _check(value >= 1, f"model.{name}", f"must be a positive integer, got {value}")
        _check(self.init_std >= 0, "model.init_std", f"must be >= 0, got {self.init_std}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule, gradient filters and checkpoint schedule."""

    steps: int = 40_000
    lr: float = 1e-3
    weight_decay: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.98
    #: AdamW's eps: the update is lr * m / (sqrt(v) + eps), so lr / eps caps the step per unit
    #: gradient once the gradients are tiny (torch's default 1e-8; `mod-add-fast` raises it).
    adam_eps: float = 1e-8
    warmup_steps: int = 10
    #: After warmup: "constant" (Nanda et al.), or "cosine" decay to 0 at `steps` (the
    #: scaling-law recipe, where the step budget is the data budget).
    lr_schedule: LrSchedule = "constant"
    #: 0 = full batch (one step is one epoch).
    batch_size: int = 0
    seed: int = 0
    #: Clip the global gradient norm to this value; 0 = off.
    grad_clip: float = 0.0
    #: Grokfast gradient filter (Lee et al. 2024), applied between backward() and step().
    grad_filter: GradFilter = "none"
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 2.0
    grokfast_window: int = 100
    #: Training loss: float64 cross-entropy, or StableMax cross-entropy (Prieto et al. 2025),
    #: whose s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0) replaces exp and cannot saturate.
    loss: Loss = "cross_entropy"
    #: ⊥Grad (Prieto et al. 2025): remove from each parameter's gradient its component
    #: along the parameter, before the Grokfast filter and the optimizer step.
    orthogonal_grad: bool = False
    #: Floor on the total L2 norm of the weights, as a multiple of its value at
    #: initialization; 0 = off. After each optimizer step, weights whose joint norm fell
    #: below it are rescaled together up to it (a one-sided version of Omnigrok's fixed-norm
    #: constraint). With ⊥Grad, which removes the gradient's push to regrow the weights,
    #: weight decay would otherwise shrink them without end and the circuit collapses.
    weight_norm_floor: float = 0.0
    #: From the first checkpoint whose *validation* accuracy is >= this, the lr is multiplied
    #: by `lr_decay_factor` (once; 0 = off). After grokking, Adam's step per unit gradient
    #: lr / sqrt(v) keeps rising as the loss falls until a direction overshoots (a loss
    #: spike, docs/benchmarks.md); a smaller lr moves that point. Reads only the validation
    #: split (task.val_frac > 0), never the test split.
    lr_decay_at_val_acc: float = 0.0
    lr_decay_factor: float = 0.1
    #: A checkpoint every this many steps...
    ckpt_every: int = 100
    #: ...plus log-spaced checkpoints before this step, to resolve the fast early phase.
    ckpt_log_until: int = 1000
    #: Stop early once *validation* accuracy has stayed >= this for `stop_patience`
    #: checkpoints; 0 = never. Needs a validation split (task.val_frac > 0): selection never
    #: looks at the test split.
    stop_at_val_acc: float = 0.0
    stop_patience: int = 5
    #: Stop at the first collapse event (`interp.collapse`): the main training accuracy more
    #: than 20 points below its best for 3 checkpoints in a row.
    stop_on_collapse: bool = False
    #: Start from another run's weights: "RUN_DIR" (its last complete checkpoint) or
    #: "RUN_DIR@STEP"; weights only, a fresh optimizer (`interp.init_from`). "" = the seed's init.
    init_from: str = ""
    #: Which checkpoints a finished run keeps (`interp.retention`): "all"; "events" (log-spaced
    #: ones plus those around accuracy crossings and collapses; the default of sweeps); or
    #: "final". The last checkpoint, the `best` one and any another run starts from are never
    #: pruned; metrics.jsonl keeps every evaluation.
    keep_checkpoints: Retention = "all"
    device: Device = "cpu"

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(
            self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            _check(0 <= value < 1, f"train.{name}", f"must be in [0, 1), got {value}")
        _check(self.adam_eps > 0, "train.adam_eps", f"must be > 0, got {self.adam_eps}")
        _check(
            self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}"
        )
        _check(
            self.batch_size >= 0,
            "train.batch_size",
            f"must be >= 0 (0 = full batch), got {self.batch_size}",
        )
        _check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(
            0 <= self.grokfast_alpha < 1,
            "train.grokfast_alpha",
            f"must be in [0, 1), got {self.grokfast_alpha}",
        )
        _check(
            self.grokfast_window >= 1,
            "train.grokfast_window",
            f"must be >= 1, got {self.grokfast_window}",
        )
        _check(
            self.weight_norm_floor >= 0,
            "train.weight_norm_floor",
            f"must be >= 0 (0 = off), got {self.weight_norm_floor}",
        )
        _check(
            0 <= self.lr_decay_at_val_acc <= 1,
            "train.lr_decay_at_val_acc",
            f"must be in [0, 1] (0 = off), got {self.lr_decay_at_val_acc}",
        )
        _check(
            0 < self.lr_decay_factor <= 1,
            "train.lr_decay_factor",
            f"must be in (0, 1], got {self.lr_decay_factor}",
        )
        _check(self.ckpt_every >= 1, "train.ckpt_every", f"must be >= 1, got {self.ckpt_every}")
        _check(
            self.ckpt_log_until >= 0,
            "train.ckpt_log_until",
            f"must be >= 0, got {self.ckpt_log_until}",
        )
        _check(
            0 <= self.stop_at_val_acc <= 1,
            "train.stop_at_val_acc",
            f"must be in [0, 1], got {self.stop_at_val_acc}",
        )
        _check(
            self.stop_patience >= 1,
            "train.stop_patience",
            f"must be >= 1, got {self.stop_patience}",
        )


def _default_task() -> TaskConfig:
    return task_config()


@dataclass(frozen=True)
class RunConfig:
    task: TaskConfig = field(default_factory=_default_task)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: Provenance only: the preset or file this config started from.
    name: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        """The config file's content; `family_module` records the module that registers the task
        family."""
        return {
            "name": self.name,
            "family_module": type(get_family(self.task.kind)).__module__,
            "task": self.task.to_dict(),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(
                "config: expected an object with sections task/model/train, got "
                f"{type(data).__name__}"
            )
        unknown = set(data) - {*_SECTIONS, "name", "family_module"}
        if unknown:
            raise ConfigError(
                f"{sorted(unknown)[0]}: unknown config section; allowed: task, model, train, name, "
                "family_module"
            )
        module = data.get("family_module")
        if module is not None and not isinstance(module, str):
            raise ConfigError(f"family_module: expected a module path, got {module!r}")
        sections: dict[str, Any] = {}
        if "name" in data:
            sections["name"] = coerce("name", data["name"], str)
        for name in _SECTIONS:
            if name not in data:
                continue
            raw = data[name]
            if not isinstance(raw, dict):
                raise ConfigError(f"{name}: expected a table of fields, got {type(raw).__name__}")
            if name == "task":
                sections["task"] = task_config_from_dict(raw, module)
            else:
                sections[name] = _build_section(name, _SECTIONS[name], raw)
        return cls(**sections)

    def with_overrides(self, overrides: list[str]) -> RunConfig:
        """Apply `section.field=value` (or unique bare `field=value`) assignments.

        A `task.kind=...` assignment is applied first: it switches the task family, keeping
        the fields the two families share and the new family's defaults for the rest.
        """
        data = self.to_dict()
        pairs = []
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-3")
            key, value = item.split("=", 1)
            pairs.append((key.strip(), value.strip()))
        for key, value in pairs:
            if key in ("task.kind", "kind"):
                family = get_family(value)
                shared = set(field_names(family.config_class))
                data["task"] = {
                    "kind": value,
                    **{k: v for k, v in data["task"].items() if k in shared},
                }
                data["family_module"] = type(family).__module__
        task_class = get_family(data["task"]["kind"], data["family_module"]).config_class
        for key, value in pairs:
            if key in ("task.kind", "kind"):
                continue
            section, name = resolve_key(key, task_class)
            data[section][name] = value
        return RunConfig.from_dict(data)


_SECTIONS: dict[str, type] = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}


def _section_fields(section: str, task_class: type | None) -> list[str]:
    if section == "task":
        return ["kind", *field_names(task_class or type(task_config()))]
    return field_names(_SECTIONS[section])


def all_keys() -> list[str]:
    """Every settable key, as `section.field` (task fields of every family)."""
    from interp.registry import all_families

    task_fields = dict.fromkeys(
        ["kind", *(n for f in all_families() for n in field_names(f.config_class))]
    )
    return [f"task.{n}" for n in task_fields] + [
        f"{s}.{n}" for s in ("model", "train") for n in field_names(_SECTIONS[s])
    ]


def resolve_key(key: str, task_class: type | None = None) -> tuple[str, str]:
    """(section, field) of a `section.field` or unique bare `field` key; task fields are
    those of `task_class` (default: the default family's)."""
    if "." in key:
        section, name = key.split(".", 1)
        if section not in _SECTIONS:
            raise ConfigError(
                f"{key}: unknown section {section!r}; allowed: {', '.join(_SECTIONS)}"
            )
        allowed = _section_fields(section, task_class)
        if name not in allowed:
            raise ConfigError(f"{key}: unknown field; allowed in {section}: {', '.join(allowed)}")
        return section, name
    matches = [(s, key) for s in _SECTIONS if key in _section_fields(s, task_class)]
    if not matches:
        raise ConfigError(f"{key}: unknown field; see `interp train --help` for the list")
    if len(matches) > 1:
        raise ConfigError(
            f"{key}: ambiguous, write one of {', '.join(f'{s}.{n}' for s, n in matches)}"
        )
    return matches[0]


#: Fields renamed since earlier versions: (section, old name) -> new name. A config.json
#: written before keeps loading; its value moves to the new field.
_RENAMED = {("train", "stop_at_test_acc"): "stop_at_val_acc"}


def _build_section(section: str, cls: type, raw: dict[str, Any]) -> Any:
    raw = dict(raw)
    for (renamed_section, old), new in _RENAMED.items():
        if renamed_section == section and old in raw and new not in raw:
            raw[new] = raw.pop(old)
    return build_section(section, cls, raw)


def load_config_file(path: Path) -> RunConfig:
    """Read a run config from TOML or JSON; errors name the file."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"{path}: config files must end in .toml or .json")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from None
    try:
        config = RunConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return replace(config, name=data.get("name", path.stem)) if "name" not in data else config
