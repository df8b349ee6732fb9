"""Task data: each family turns its config into a TaskData (tokens, labels, named splits)."""

from __future__ import annotations

from dataclasses import replace

from interp.config_base import TaskConfig
from interp.registry import family_of
from interp.tasks.base import TaskData


def build_task(config: TaskConfig) -> TaskData:
    """Generate the dataset and its split deterministically from the config (by its family),
    tagged with the family's kind so analyses can find the family from the data."""
    return replace(family_of(config).build_task(config), kind=config.kind, config=config)


__all__ = ["TaskData", "build_task"]
