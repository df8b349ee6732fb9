"""Task generators: each turns a TaskConfig into a TaskData (tokens, labels, named splits)."""

from __future__ import annotations

from interp.config import TaskConfig
from interp.tasks.base import TaskData


def build_task(config: TaskConfig) -> TaskData:
    """Generate the dataset and its split deterministically from the config."""
    if config.kind == "modular":
        from interp.tasks.modular import build_modular

        return build_modular(config)
    if config.kind == "two_hop":
        from interp.tasks.two_hop import build_two_hop

        return build_two_hop(config)
    if config.kind == "comparison":
        from interp.tasks.comparison import build_comparison

        return build_comparison(config)
    raise ValueError(f"task.kind: unknown task kind {config.kind!r}")  # pragma: no cover


__all__ = ["TaskData", "build_task"]
