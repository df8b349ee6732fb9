"""A sweep spec (TOML): a base preset or config and axes over any config field.

    base = "demo"                      # a preset, or a .toml/.json config (relative to SPEC)
    set = ["train.steps=3000"]         # fixed overrides of every run (optional)
    seeds = [0, 1, 2]                  # each planned run once per seed (optional)
    seed_fields = ["model.seed", "train.seed"]   # what a seed sets (this is the default)
    keep_checkpoints = "events"        # the runs' retention policy (`interp.retention`)

    [grid]                             # every combination of these
    "train.weight_decay" = [0.3, 1.0]
    "task.train_frac" = [0.3, 0.4, 0.5]

    [zip]                              # these vary together (equal lengths), times the grid
    "train.lr" = [1e-3, 3e-3]
    "train.warmup_steps" = [10, 50]

    [[runs]]                           # explicit extra runs (times the seeds)
    "train.weight_decay" = 0.0

    [names]                            # short names for run folders (defaults: DEFAULT_SHORT)
    "train.weight_decay" = "wd"

Fields are `section.field` as for `--set` (a unique bare name works too); a nested table
(`[grid.train] weight_decay = [...]`) means the same. Every value of every axis and every
planned run is checked before anything runs; a `SpecError` names the axis and the value.
Each run's folder name lists its axis values and a short hash of its whole config, e.g.
`wd=0.3,frac=0.4,seed=1-3fa2c1`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.config_base import ConfigError
from interp.presets import resolve_config

DEFAULT_SEED_FIELDS = ("model.seed", "train.seed")
DEFAULT_RETENTION = "events"
#: Short names of common axes in run folder names.
DEFAULT_SHORT = {
    "weight_decay": "wd",
    "train_frac": "frac",
    "train_subset": "n",
    "learning_rate": "lr",
    "d_model": "d",
    "init_from": "from",
}
KEYS = {"base", "set", "seeds", "seed_fields", "keep_checkpoints", "grid", "zip", "runs", "names"}


class SpecError(ConfigError):
    """A sweep spec that cannot run (exit 2 before anything runs)."""


@dataclass(frozen=True)
class PlannedRun:
    """One run of the sweep: its folder name, axis values and resolved config."""

    name: str
    axes: dict[str, Any]
    config: RunConfig = field(repr=False)

    @property
    def overrides(self) -> list[str]:
        return [assignment(k, v) for k, v in self.axes.items()]


@dataclass(frozen=True)
class SweepSpec:
    base: str
    fixed: tuple[str, ...]
    axes: tuple[str, ...]
    runs: tuple[PlannedRun, ...]
    raw: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.raw


def assignment(key: str, value: Any) -> str:
    """`key=value` as `--set` reads it."""
    if isinstance(value, bool):
        value = str(value).lower()
    return f"{key}={value}"


def flatten_table(table: Any, where: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: expected a table of field = value, got {table!r}")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_table(value, where, name + "."))
        else:
            out[name] = value
    return out


def _axis_values(table: dict[str, Any], where: str) -> dict[str, list[Any]]:
    axes = flatten_table(table, where)
    for name, values in axes.items():
        if not isinstance(values, list):
            raise SpecError(f"{where}.{name}: expected a list of values, got {values!r}")
        if not values:
            raise SpecError(f"{where}.{name}: the axis is empty")
    return axes


def _format(value: Any) -> str:
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
        if "/" in text:  # a path (init_from): its last part names it
            text = text.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", text)[:40]


def short_name(key: str, names: dict[str, str]) -> str:
    last = key.rsplit(".", 1)[-1]
    return names.get(key) or DEFAULT_SHORT.get(last) or last


def run_name(axes: dict[str, Any], config: RunConfig, names: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    label = ",".join(f"{short_name(k, names)}={_format(v)}" for k, v in axes.items())
    return f"{label}-{digest[:6]}" if label else f"run-{digest[:6]}"


def absolute_paths(config: RunConfig) -> RunConfig:
    """Relative paths in the config (`train.init_from`, a walk's `task.teacher` members, and
    every task field named `*_file`: a knowledge base, an edge list) are resolved against the
    working directory now, so the planned config (stored in sweep.json) means the same run
    wherever `--resume` is run."""
    files = {
        name: str(Path(value).resolve())
        for name, value in config.task.to_dict().items()
        if name.endswith("_file") and isinstance(value, str) and value
    }
    teacher = getattr(config.task, "teacher", "")
    if teacher:
        files["teacher"] = "+".join(_resolved(member) for member in teacher.split("+"))
    if files:
        config = replace(config, task=replace(config.task, **files))
    if not config.train.init_from:
        return config
    return replace(config, train=replace(config.train, init_from=_resolved(config.train.init_from)))


def _resolved(source: str) -> str:
    """"PATH[@STEP|@best]" with PATH made absolute."""
    path, at, step = source.rpartition("@") if "@" in source else (source, "", "")
    return f"{Path(path.strip()).resolve()}{at}{step}"


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"SPEC: {path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"SPEC: {path}: not valid TOML: {exc}") from None
    return parse_spec(raw, path.parent)


def parse_spec(raw: dict[str, Any], root: Path = Path(".")) -> SweepSpec:
    """Plan and check every run (see the module docstring)."""
    if "search" in raw:
        raise SpecError("spec: a [search] table: run it with interp sweep search SPEC --out DIR")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise SpecError(f"spec: unknown key(s) {unknown}; known: {sorted(KEYS)}")
    base = raw.get("base")
    if not isinstance(base, str) or not base:
        raise SpecError("spec: 'base' must name a preset or a .toml/.json config file")
    if base.endswith((".toml", ".json")) and not Path(base).is_absolute():
        base = str(root / base)
    fixed = raw.get("set", [])
    if not isinstance(fixed, list) or not all(isinstance(s, str) for s in fixed):
        raise SpecError("spec: 'set' must be a list of 'section.field=value' strings")
    seeds = raw.get("seeds", [None])
    if not isinstance(seeds, list) or not seeds:
        raise SpecError("spec: 'seeds' must be a non-empty list of integers")
    if any(s is not None and (not isinstance(s, int) or isinstance(s, bool)) for s in seeds):
        raise SpecError(f"seeds: expected integers, got {seeds!r}")
    seed_fields = raw.get("seed_fields", list(DEFAULT_SEED_FIELDS))
    retention = raw.get("keep_checkpoints", DEFAULT_RETENTION)
    names = {str(k): str(v) for k, v in flatten_table(raw.get("names", {}), "names").items()}
    grid = _axis_values(raw.get("grid", {}), "grid")
    zipped = _axis_values(raw.get("zip", {}), "zip")
    if len({len(v) for v in zipped.values()}) > 1:
        lengths = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise SpecError(f"zip: the zipped axes must have equal lengths ({lengths})")
    extra = raw.get("runs", [])
    if not isinstance(extra, list):
        raise SpecError("runs: expected an array of tables ([[runs]])")
    extra = [flatten_table(r, f"runs[{i}]") for i, r in enumerate(extra)]

    try:
        config = resolve_config(base, [*fixed, f"train.keep_checkpoints={retention}"])
    except ConfigError as exc:
        raise SpecError(f"base/set: {exc}") from None
    # Each value on its own first, so that an error names its axis.
    checks = [(f"grid.{k}", k, v) for k, vs in grid.items() for v in vs]
    checks += [(f"zip.{k}", k, v) for k, vs in zipped.items() for v in vs]
    checks += [(f"runs[{i}].{k}", k, v) for i, r in enumerate(extra) for k, v in r.items()]
    checks += [(f"seeds ({f})", f, s) for f in seed_fields for s in seeds if s is not None]
    for where, key, value in checks:
        if isinstance(value, (list, dict)):
            raise SpecError(f"{where}: expected a single value, got {value!r}")
        try:
            config.with_overrides([assignment(key, value)])
        except ConfigError as exc:
            raise SpecError(f"{where} = {value!r}: {exc}") from None

    combos: list[dict[str, Any]] = []
    zip_rows = [dict(zip(zipped, vs)) for vs in zip(*zipped.values())] or [{}]
    if grid or zipped or not extra:
        for values in itertools.product(*grid.values()):
            for zrow in zip_rows:
                combos.append({**dict(zip(grid, values)), **zrow})
    combos += extra
    planned, seen = [], set()
    for combo in combos:
        for seed in seeds:
            axes = dict(combo)
            overrides = [assignment(k, v) for k, v in axes.items()]
            if seed is not None:
                axes["seed"] = seed
                overrides += [assignment(f, seed) for f in seed_fields]
            try:
                run_config = absolute_paths(config.with_overrides(overrides))
            except ConfigError as exc:
                raise SpecError(f"run {axes}: {exc}") from None
            name = run_name(axes, run_config, names)
            if name in seen:
                raise SpecError(f"run {axes}: planned twice (same config as another run)")
            seen.add(name)
            planned.append(PlannedRun(name, axes, run_config))
    axes_names = tuple(dict.fromkeys(k for p in planned for k in p.axes))
    return SweepSpec(base, tuple(fixed), axes_names, tuple(planned), raw)
