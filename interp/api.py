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
):
    """Train a preset (`"demo"`), a .toml/.json config file or a `RunConfig` into `out`.

    `overrides` are `section.field=value` strings as for `--set`. With `resume=True` the
    run in `out` continues from its last complete checkpoint (no config is given then).
    Returns the `interp.training.TrainResult`.
    """
    from interp import training

    if resume:
        return training.resume(out, progress=progress)
    if isinstance(preset_or_config, RunConfig):
        config = preset_or_config.with_overrides(list(overrides))
    else:
        config = resolve_config(str(preset_or_config), list(overrides))
    return training.train(config, out, progress=progress, overwrite=overwrite)
