"""Named starting points for `interp train PRESET`, collected from the task families.

Each family declares its presets next to its config (`interp.registry.Family.presets`);
this module only gathers them. The built-in ones:

`mod-add` is the Nanda et al. (2023) mainline recipe exactly (ANCHORS §1). `demo` is a
smaller, faster variant that groks on 2 CPU cores in a few minutes. `demo-memorize` is
the memorization control: the demo with every answer replaced by a random one and no
weight decay, so a lookup table is the only solution and `circuit_score` must stay low.
`mod-add-fast` is the same task, training split and model as `mod-add` with the fastest
recipe measured in docs/benchmarks.md (Grokfast EMA + ⊥Grad, lr 3e-3, weight decay 1): 99 %
test accuracy in ~400 steps instead of thousands. ⊥Grad removes the gradient's radial part,
so weight decay alone would keep shrinking the weights after the circuit has formed, and
accuracy collapsed a few hundred steps later on every seed tried. A floor on the total
weight norm (`train.weight_norm_floor = 1.25`: 1.25x its initial value, binding once the
norm has first risen past it, which it does in the first ~100 steps) stops the shrinking
there; the circuit then holds (5 seeds stable to 1,500 steps, docs/benchmarks.md). A floor at
the initial norm (1.0) still let loss spikes through (test accuracy 0.77 for one checkpoint
on seed 999, 0.96 at the end on seed 1000). The preset sets aside 10 % of the held-out pairs
as a validation split and, as a convenience, stops once validation accuracy has stayed
>= 99 % for 4 checkpoints (100 steps); `--set train.stop_at_val_acc=0` trains on.

`two-hop` and `comparison` are the small-scale CPU versions of Wang et al. (2024)
(ANCHORS §2): |E| = 100, phi = 7.2, a 4-layer pre-LN transformer with tied embeddings,
AdamW with weight decay and clipped gradients, minibatches of 128. `two-hop` runs 30k steps
(~35 min on one idle core): test-ID first reaches 95 % at ~14k and stays >= 95 % over
25k-30k (docs/entity_tasks.md); at 10k it is ~85 %. Its 10 % OOD atomic facts (Wang et al.
use 5 % at 20x the entities) give 95 test-OOD examples instead of 19, enough for a 95 %
interval of at most +-5 points at the near-chance accuracy OOD stays at.
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
