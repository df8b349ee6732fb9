"""interp: train small hooked transformers on algorithmic tasks and watch circuits form.

`import interp` is light (no torch): the notebook entry points load on first use.

    import interp
    run = interp.load_run("runs/demo")   # .config .steps .metrics .task .model_at(step)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.runs import Run, load_run

__all__ = ["Run", "load_run"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from interp import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
