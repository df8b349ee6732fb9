"""The one-call Python API that notebooks use (`import interp; interp.train(...)`).

The same operations as the CLI, with Python values instead of flags and exceptions instead
of exit codes: the task family's progress measures are chosen by the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from interp.config import RunConfig
from interp.presets import resolve_config


def train(preset_or_config: str | Path | RunConfig, out: str | Path, *, overrides: Sequence[str] = (),
          progress: bool = True, overwrite: bool = False, resume: bool = False):
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


def analyze(run_dir: str | Path, parts: Sequence[str] | None = None, *, figures: bool = True,
            progress: bool = True):
    """Analyze every checkpoint of a run and write its table, summary and report; returns
    the `circuits.analyze.RunAnalysis`."""
    from circuits.analyze import analyze_run, write_analysis
    from interp.runs import load_run

    result = analyze_run(load_run(Path(run_dir)), tuple(parts) if parts else None, progress=progress)
    write_analysis(result, figures=figures)
    return result
