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

TaskKind = Literal["modular", "two_hop", "comparison"]
Operation = Literal[
    "add", "sub", "mul", "div", "sum_sq", "quad", "quad_x", "cube_xy", "cubic", "div_or_sub"
]
Normalization = Literal["none", "LN"]
ActFn = Literal["relu", "gelu", "gelu_new", "silu"]
InitMode = Literal["gpt2", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"]
GradFilter = Literal["none", "ema", "ma"]
Loss = Literal["cross_entropy", "stablemax"]
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


#: Tasks over a knowledge base of entities (Wang et al. 2024, ANCHORS §2).
ENTITY_KINDS: frozenset[str] = frozenset({"two_hop", "comparison"})


@dataclass(frozen=True)
class TaskConfig:
    """What the model learns.

    `modular`: `a b =` -> op(a, b) mod p, all p^2 pairs split once (fields p, operation, train_frac).
    `two_hop`: composition over a random knowledge graph, `h r1 r2` -> t (see `interp.tasks.two_hop`).
    `comparison`: `attr e1 e2` -> one of `< = >` over ordinal attribute values
    (see `interp.tasks.comparison`). Entity tasks use the fields from `n_entities` on;
    `kb_file` (a JSONL or CSV of atomic facts, `interp.tasks.kb_file`) replaces the random
    knowledge base, and then the sizes come from the file. `split_seed` seeds both the
    random knowledge base and the split. Fields of the other kinds are ignored.
    """

    kind: TaskKind = "modular"
    operation: Operation = "add"
    p: int = 113
    train_frac: float = 0.3
    split_seed: int = 598
    #: Entity tasks: number of entities (ignored with kb_file).
    n_entities: int = 100
    #: two_hop: number of relations (ignored with kb_file).
    n_relations: int = 20
    #: two_hop: distinct relations per entity, each to a random entity (ignored with kb_file).
    out_degree: int = 10
    #: comparison: number of attributes and of ordinal values per attribute (ignored with kb_file).
    n_attributes: int = 10
    n_values: int = 20
    #: Fraction of atomic facts (two_hop) or of entities per attribute (comparison) that are OOD.
    ood_frac: float = 0.05
    #: Inferred facts in training / ID atomic facts (Wang et al.'s phi).
    phi: float = 7.2
    #: Fraction of the ID inferred facts held out as test-ID (capped at max_eval).
    test_id_frac: float = 0.1
    #: Cap on the size of each held-out split (test_id, test_ood), sampled with split_seed.
    max_eval: int = 3000
    #: Path of a JSONL/CSV knowledge base; "" = a random synthetic one.
    kb_file: str = ""
    #: modular: fraction of the held-out pairs set aside as a validation split (`val`) for
    #: early stopping and the `best` checkpoint; the rest stay `test`. 0 = no validation
    #: split (the split is then exactly the one of earlier versions). The training pairs
    #: never change, so a recipe's training set is the same with or without it.
    val_frac: float = 0.0
    #: Memorization control: replace every answer by a random one (seeded by split_seed),
    #: so nothing generalizes and the only solution is a lookup table. Entity tasks: the
    #: training inferred facts get random answers (atomic facts and test splits keep theirs).
    shuffle_labels: bool = False

    def __post_init__(self) -> None:
        if self.kind == "modular":
            self._validate_modular()
        else:
            self._validate_entity()

    def _validate_modular(self) -> None:
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
        _check(0.0 <= self.val_frac < 1.0, "task.val_frac", f"must be in [0, 1), got {self.val_frac}")

    def _validate_entity(self) -> None:
        _check(self.val_frac == 0, "task.val_frac",
               f"validation splits exist for modular tasks only (entity tasks select on training metrics), got {self.val_frac}")
        _check(0.0 <= self.ood_frac < 1.0, "task.ood_frac", f"must be in [0, 1), got {self.ood_frac}")
        _check(self.phi > 0, "task.phi", f"must be > 0, got {self.phi}")
        _check(0.0 < self.test_id_frac < 1.0, "task.test_id_frac", f"must be in (0, 1), got {self.test_id_frac}")
        _check(self.max_eval >= 1, "task.max_eval", f"must be >= 1, got {self.max_eval}")
        if self.kb_file:
            return
        _check(self.n_entities >= 2, "task.n_entities", f"must be >= 2, got {self.n_entities}")
        if self.kind == "two_hop":
            _check(self.n_relations >= 1, "task.n_relations", f"must be >= 1, got {self.n_relations}")
            _check(
                1 <= self.out_degree <= self.n_relations,
                "task.out_degree",
                f"must be in [1, n_relations={self.n_relations}], got {self.out_degree}",
            )
        else:
            _check(self.n_attributes >= 1, "task.n_attributes", f"must be >= 1, got {self.n_attributes}")
            _check(self.n_values >= 2, "task.n_values", f"must be >= 2, got {self.n_values}")

    @property
    def is_entity_task(self) -> bool:
        return self.kind in ENTITY_KINDS

    def entity_sizes(self) -> tuple[int, int, int]:
        """(n_entities, n_relations or n_attributes, n_values) from the fields or the kb_file."""
        if self.kb_file:
            from interp.tasks.kb_file import kb_sizes

            return kb_sizes(self.kb_file, self.kind)
        if self.kind == "two_hop":
            return self.n_entities, self.n_relations, 0
        return self.n_entities, self.n_attributes, self.n_values

    @property
    def d_vocab(self) -> int:
        """Input vocabulary. modular: the p numbers plus `=`. Entity tasks: one token per
        entity, relation/attribute and value, plus the special tokens (`interp.tasks.vocab`)."""
        if self.kind == "modular":
            return self.p + 1
        from interp.tasks.vocab import EntityVocab

        return EntityVocab.for_config(self).d_vocab

    @property
    def d_vocab_out(self) -> int:
        """modular: the p residues. Entity tasks: the full vocabulary, so embeddings can be tied."""
        return self.p if self.kind == "modular" else self.d_vocab

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
        _check(self.weight_norm_floor >= 0, "train.weight_norm_floor",
               f"must be >= 0 (0 = off), got {self.weight_norm_floor}")
        _check(self.ckpt_every >= 1, "train.ckpt_every", f"must be >= 1, got {self.ckpt_every}")
        _check(self.ckpt_log_until >= 0, "train.ckpt_log_until", f"must be >= 0, got {self.ckpt_log_until}")
        _check(
            0 <= self.stop_at_val_acc <= 1,
            "train.stop_at_val_acc",
            f"must be in [0, 1], got {self.stop_at_val_acc}",
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


#: Fields renamed since earlier versions: (section, old name) -> new name. A config.json
#: written before keeps loading; its value moves to the new field.
_RENAMED = {("train", "stop_at_test_acc"): "stop_at_val_acc"}


def _build_section(section: str, cls: type, raw: dict[str, Any]) -> Any:
    raw = dict(raw)
    for (renamed_section, old), new in _RENAMED.items():
        if renamed_section == section and old in raw and new not in raw:
            raw[new] = raw.pop(old)
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
