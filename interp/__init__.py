"""interp: train small hooked transformers on algorithmic tasks and watch circuits form.

`import interp` is light (no torch): the notebook entry points load on first use.

    import interp
    interp.train("demo", "runs/demo")    # a preset, a config file or a RunConfig; overrides=[...]
    run = interp.load_run("runs/demo")   # .config .steps .metrics .task .model_at(step)
    interp.run_sweep("spec.toml", "sweeps/wd")   # as `interp sweep run`
    interp.run_search("search.toml", "sweeps/t32")   # as `interp sweep search`
    sweep = interp.load_sweep("sweeps/wd")   # .table (pandas) .event_curve() .fit() ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.api import train
    from interp.runs import Run, load_run
    from interp.sweep.runner import run_sweep
    from interp.sweep.search_run import run_search
    from interp.sweep.study import load_sweep

__all__ = ["Run", "load_run", "load_sweep", "run_search", "run_sweep", "train"]


def __getattr__(name: str) -> Any:
    if name in ("Run", "load_run"):
        from interp import runs

        return getattr(runs, name)
    if name == "load_sweep":
        from interp.sweep import study

        return study.load_sweep
    if name == "run_sweep":
        from interp.sweep import runner

        return runner.run_sweep
    if name == "run_search":
        from interp.sweep import search_run

        return search_run.run_search
    if name == "train":
        from interp import api

        return getattr(api, name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
