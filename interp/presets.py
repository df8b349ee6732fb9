"""Named starting points for `interp train PRESET`, collected from the task families.

Each family declares its presets next to its config (`interp.registry.Family.presets`); this
module gathers them, resolves a preset name or a config file into a `RunConfig` and applies
`--set` overrides. What each preset is and what it measures: `interp presets`, README.md, and
for the recipes' measurements docs/benchmarks.md (`mod-add-fast`, `demo`),
docs/entity_tasks.md and docs/experiments.md §3 (`two-hop`, `comparison`) and
docs/graph_walk.md (`graph-walk`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from interp.config import ConfigError, RunConfig, load_config_file
from interp.registry import all_families


class _Presets(Mapping[str, RunConfig]):
    """Every family's presets by name, gathered again when a family has been registered since."""

    def __init__(self) -> None:
        self._table: dict[str, RunConfig] = {}
        self._families: tuple = ()

    def _load(self) -> dict[str, RunConfig]:
        families = tuple(all_families())
        if families != self._families:
            table: dict[str, RunConfig] = {}
            for family in families:
                for name, config in family.presets().items():
                    if name in table:
                        raise ValueError(f"preset {name!r} is defined by two task families")
                    table[name] = config
            self._table, self._families = table, families
        return self._table

    def __getitem__(self, name: str) -> RunConfig:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


PRESETS: Mapping[str, RunConfig] = _Presets()


def preset_names() -> list[str]:
    return sorted(PRESETS)


def resolve_config(preset_or_config: str, overrides: list[str]) -> RunConfig:
    """A preset by name or a .toml/.json config file, with `section.field=value` overrides."""
    if preset_or_config in PRESETS:
        config = PRESETS[preset_or_config]
    elif preset_or_config.endswith((".toml", ".json")):
        config = load_config_file(Path(preset_or_config))
    else:
        raise ConfigError(
            f"PRESET_OR_CONFIG: unknown preset {preset_or_config!r}; presets: "
            f"{', '.join(preset_names())}, "
            "or a path to a .toml/.json config"
        )
    return config.with_overrides(overrides)
