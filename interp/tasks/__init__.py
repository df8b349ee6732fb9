"""Task generators: each turns a TaskConfig into a TaskData (tokens, labels, named splits)."""

from __future__ import annotations

from dataclasses import replace

from interp.config import TaskConfig
from interp.tasks.base import TaskData


def build_task(config: TaskConfig) -> TaskData:
    """Generate the dataset and its split deterministically from the config."""
    if config.kind == "modular":
        from interp.tasks.modular import build_modular

        return build_modular(config)
    if config.kind == "two_hop":
        from interp.tasks.two_hop import build_two_hop

        task = build_two_hop(config)
    elif config.kind == "comparison":
        from interp.tasks.comparison import build_comparison

        task = build_comparison(config)
    else:
        raise ValueError(f"task.kind: unknown task kind {config.kind!r}")  # pragma: no cover
    return _shuffle_inferred_answers(task, config.split_seed) if config.shuffle_labels else task


def _shuffle_inferred_answers(task: TaskData, seed: int) -> TaskData:
    """Entity memorization control: each training inferred fact gets an answer drawn at random
    from the answers of that split, so composing or comparing atomic facts no longer helps."""
    import torch

    index = task.splits["train_inferred"]
    answers = torch.unique(task.labels[index])
    generator = torch.Generator().manual_seed(seed + 1)
    labels = task.labels.clone()
    labels[index] = answers[torch.randint(len(answers), (len(index),), generator=generator)]
    return replace(task, labels=labels)


__all__ = ["TaskData", "build_task"]
