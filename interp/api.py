"""The one-call Python API that notebooks use (`import interp; interp.train(...)`).

The same operations as the CLI, with Python values instead of flags and exceptions instead
of exit codes: the task family's progress measures are chosen by the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from interp.config import RunConfig
from interp.presets import resolve_config


def train(
    preset_or_config: str | Path | RunConfig,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    progress: bool = True,
    overwrite: bool = False,
    resume: bool = False,
    seeds: Sequence[int] | None = None,
):
    """Train a preset (`"demo"`), a .toml/.json config file or a `RunConfig` into `out`.

    `overrides` are `section.field=value` strings as for `--set`. With `resume=True` the
    run in `out` continues from its last complete checkpoint (no config is given then).
    Returns the `interp.training.TrainResult`. With `seeds`, one member per seed is trained
    together with the others into `out/seed=S` (`interp.stacked`; `resume=True` continues
    them all) and the `interp.stacked.StackedResult` is returned.
    """
    from interp import runs, stacked, training

    if resume:
        if (Path(out) / runs.STACKED_FILE).is_file():
            return stacked.resume_members(out, progress=progress)
        return training.resume(out, progress=progress)
    if isinstance(preset_or_config, RunConfig):
        config = preset_or_config.with_overrides(list(overrides))
    else:
        config = resolve_config(str(preset_or_config), list(overrides))
    if seeds is not None:
        return stacked.train_members(
            config, out, list(seeds), overwrite=overwrite, progress=progress
        )
    return training.train(config, out, progress=progress, overwrite=overwrite)
