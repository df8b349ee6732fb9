"""Run configuration: frozen dataclasses that fully describe a run.

A run is `RunConfig(task, model, train)`. Every field is settable from the command
line as `section.field=value` (or a bare `field=value` when the name is unique).
`__post_init__` only validates; derived values are properties. `to_dict`/`from_dict`
round-trip exactly, and `from_dict` rejects unknown fields by name, so a typo in a
config file is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

TaskKind = Literal["modular"]
Operation = Literal[
    "add", "sub", "mul", "div", "sum_sq", "quad", "quad_x", "cube_xy", "cubic", "div_or_sub"
]
Normalization = Literal["none", "LN"]
ActFn = Literal["relu", "gelu", "gelu_new", "silu"]
InitMode = Literal["gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]
GradFilter = Literal["none", "ema", "ma"]
Device = Literal["cpu", "cuda", "auto"]

#: Operations that need a multiplicative inverse mod p, hence a prime p.
NEEDS_PRIME: frozenset[str] = frozenset({"div", "div_or_sub"})


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range. The message names the field."""


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def _check(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


@dataclass(frozen=True)
class TaskConfig:
    """What the model learns. `modular`: `a b =` -> op(a, b) mod p, all p^2 pairs split once."""

    kind: TaskKind = "modular"
    operation: Operation = "add"
    p: int = 113
    train_frac: float = 0.3
    split_seed: int = 598
    #: Memorization control: replace every answer by a random one (seeded by split_seed),
    #: so nothing generalizes and the only solution is a lookup table.
    shuffle_labels: bool = False

    def __post_init__(self) -> None:
        _check(self.p >= 3, "task.p", f"must be an integer >= 3, got {self.p}")
        _check(self.p <= 2048, "task.p", f"must be <= 2048 (p^2 inputs are enumerated), got {self.p}")
        if self.operation in NEEDS_PRIME:
            _check(
                is_prime(self.p),
                "task.p",
                f"operation {self.operation!r} needs a prime modulus (it divides by y), got {self.p}",
            )
        _check(
            0.0 < self.train_frac < 1.0,
            "task.train_frac",
            f"must be in the open interval (0, 1), got {self.train_frac}",
        )

    @property
    def d_vocab(self) -> int:
        """Input vocabulary: the p numbers plus the `=` token."""
        return self.p + 1

    @property
    def d_vocab_out(self) -> int:
        return self.p

    @property
    def n_ctx(self) -> int:
        return 3

    @property
    def equals_token(self) -> int:
        return self.p


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
    warmup_steps: int = 10
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
    #: A checkpoint every this many steps...
    ckpt_every: int = 100
    #: ...plus log-spaced checkpoints before this step, to resolve the fast early phase.
    ckpt_log_until: int = 1000
    #: Stop early once test accuracy has stayed >= this for `stop_patience` checkpoints; 0 = never.
    stop_at_test_acc: float = 0.0
    stop_patience: int = 5
    device: Device = "cpu"

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "train.steps", f"must be >= 1, got {self.steps}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(self.weight_decay >= 0, "train.weight_decay", f"must be >= 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            _check(0 <= value < 1, f"train.{name}", f"must be in [0, 1), got {value}")
        _check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.batch_size >= 0, "train.batch_size", f"must be >= 0 (0 = full batch), got {self.batch_size}")
        _check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(0 <= self.grokfast_alpha < 1, "train.grokfast_alpha", f"must be in [0, 1), got {self.grokfast_alpha}")
        _check(self.grokfast_window >= 1, "train.grokfast_window", f"must be >= 1, got {self.grokfast_window}")
        _check(self.ckpt_every >= 1, "train.ckpt_every", f"must be >= 1, got {self.ckpt_every}")
        _check(self.ckpt_log_until >= 0, "train.ckpt_log_until", f"must be >= 0, got {self.ckpt_log_until}")
        _check(
            0 <= self.stop_at_test_acc <= 1,
            "train.stop_at_test_acc",
            f"must be in [0, 1], got {self.stop_at_test_acc}",
        )
        _check(self.stop_patience >= 1, "train.stop_patience", f"must be >= 1, got {self.stop_patience}")


@dataclass(frozen=True)
class RunConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: Provenance only: the preset or file this config started from.
    name: str = "custom"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"config: expected an object with sections task/model/train, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(
                f"{sorted(unknown)[0]}: unknown config section; allowed: task, model, train, name"
            )
        sections: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                continue
            if f.name == "name":
                sections["name"] = _coerce("name", data["name"], str)
                continue
            section_cls = _SECTIONS[f.name]
            raw = data[f.name]
            if not isinstance(raw, dict):
                raise ConfigError(f"{f.name}: expected a table of fields, got {type(raw).__name__}")
            sections[f.name] = _build_section(f.name, section_cls, raw)
        return cls(**sections)

    def with_overrides(self, overrides: list[str]) -> RunConfig:
        """Apply `section.field=value` (or unique bare `field=value`) assignments."""
        data = self.to_dict()
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-3")
            key, value = item.split("=", 1)
            section, name = resolve_key(key.strip())
            data[section][name] = value.strip()
        return RunConfig.from_dict(data)


_SECTIONS: dict[str, type] = {"task": TaskConfig, "model": ModelConfig, "train": TrainConfig}


def all_keys() -> list[str]:
    """Every settable key, as `section.field`."""
    return [f"{s}.{f.name}" for s, c in _SECTIONS.items() for f in fields(c)]


def resolve_key(key: str) -> tuple[str, str]:
    if "." in key:
        section, name = key.split(".", 1)
        if section not in _SECTIONS:
            raise ConfigError(f"{key}: unknown section {section!r}; allowed: {', '.join(_SECTIONS)}")
        if name not in {f.name for f in fields(_SECTIONS[section])}:
            raise ConfigError(f"{key}: unknown field; allowed in {section}: {', '.join(f.name for f in fields(_SECTIONS[section]))}")
        return section, name
    matches = [(s, key) for s, c in _SECTIONS.items() if key in {f.name for f in fields(c)}]
    if not matches:
        raise ConfigError(f"{key}: unknown field; see `interp train --help` for the list")
    if len(matches) > 1:
        raise ConfigError(f"{key}: ambiguous, write one of {', '.join(f'{s}.{n}' for s, n in matches)}")
    return matches[0]


def _build_section(section: str, cls: type, raw: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{section}.{unknown[0]}: unknown field; allowed: {', '.join(sorted(known))}")
    kwargs = {name: _coerce(f"{section}.{name}", value, hints[name]) for name, value in raw.items()}
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a JSON/TOML/CLI value to the field's type, or raise a ConfigError naming the field."""
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{name}: got {value!r}; allowed: {', '.join(map(str, allowed))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None or value in ("none", "None", "null"):
            return None
        return _coerce(name, value, args[0])
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                as_float = float(value.replace("_", ""))
            except ValueError:
                as_float = math.nan
            if as_float.is_integer():
                return int(as_float)
        raise ConfigError(f"{name}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            result = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if not math.isfinite(result):
            raise ConfigError(f"{name}: expected a finite number, got {value!r}")
        return result
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported field type {hint}")  # pragma: no cover


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
