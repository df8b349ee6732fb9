"""What every config section is built from: validation errors, value coercion, the task base.

`ConfigError` names the field (`task.p: must be ...`); `coerce` converts a JSON, TOML or
command-line value to a field's annotated type; `build_section` builds a frozen dataclass
from a table of raw values and rejects unknown fields by name. `TaskConfig` is the base of
every task family's config (`interp.registry`): one frozen dataclass per family, tagged
by its class-level `kind`, holding only that family's fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, get_args, get_origin


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range. The message names the field."""


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % d for d in range(2, math.isqrt(n) + 1))


def check(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


@dataclass(frozen=True)
class TaskConfig:
    """Base of the task families' configs. `kind` is the family's tag in config files.

    Subclasses are frozen dataclasses with only their own fields, whose `__post_init__`
    validates, and which say what the model sees: `d_vocab`, `d_vocab_out`, `n_ctx`.
    """

    kind: ClassVar[str] = ""
    #: Seeds the split (and any random generation of the data).
    split_seed: int = 598
    #: Memorization control: answers replaced by random ones (each family says how).
    shuffle_labels: bool = False

    @property
    def d_vocab(self) -> int:
        raise NotImplementedError

    @property
    def d_vocab_out(self) -> int:
        raise NotImplementedError

    @property
    def n_ctx(self) -> int:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


def field_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def build_section(section: str, cls: type, raw: dict[str, Any]) -> Any:
    """`cls(**raw)` with every value coerced to its field's type; unknown fields are errors."""
    hints = typing.get_type_hints(cls)
    known = field_names(cls)
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]}: unknown field; allowed: {', '.join(sorted(known))}"
        )
    kwargs = {name: coerce(f"{section}.{name}", value, hints[name]) for name, value in raw.items()}
    return cls(**kwargs)


def coerce(name: str, value: Any, hint: Any) -> Any:
    """Convert a JSON/TOML/CLI value to the field's type, or raise a ConfigError naming the
    field."""
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
        return coerce(name, value, args[0])
    if hint is bool:
        return _as_bool(name, value)
    if hint is int:
        return _as_int(name, value)
    if hint is float:
        return _as_float(name, value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{name}: unsupported field type {hint}")  # pragma: no cover


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no"):
        return False
    raise ConfigError(f"{name}: expected true or false, got {value!r}")


def _as_int(name: str, value: Any) -> int:
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


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if not math.isfinite(result):
        raise ConfigError(f"{name}: expected a finite number, got {value!r}")
    return result
