"""The dataset shape every task produces, so training and analysis are task-agnostic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor


@dataclass(frozen=True)
class TaskData:
    """All examples of a task, with named index splits into them.

    The answer is read at the last position. `labels` index the output vocabulary;
    rows whose label is -1 have no defined answer (e.g. x/0) and belong to no split.
    `train_splits` names the splits the model is trained on; the rest are held out.
    `extras` holds what analyses need beyond tokens and labels (for the entity tasks: the
    bridge entity or attribute values of every example, and the knowledge-base tables);
    it is regenerated deterministically from the config, never saved with the run.
    """

    tokens: Int[Tensor, "example pos"]
    labels: Int[Tensor, " example"]
    splits: dict[str, Int[Tensor, " index"]]
    train_splits: tuple[str, ...] = ("train",)
    token_names: tuple[str, ...] = field(default=())
    extras: dict[str, Tensor] = field(default_factory=dict)
    #: The task family that built it (`interp.registry`), set by `interp.tasks.build_task`.
    kind: str = ""
    #: The config it was built from (set by `interp.tasks.build_task`): what a family's
    #: sampler may need beyond the examples (e.g. a distillation teacher).
    config: Any = field(default=None, compare=False, repr=False)

    @property
    def n_examples(self) -> int:
        return int(self.tokens.shape[0])

    def split(self, name: str) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, " batch"]]:
        index = self.splits[name]
        return self.tokens[index], self.labels[index]

    @property
    def train_index(self) -> Int[Tensor, " index"]:
        return torch.cat([self.splits[name] for name in self.train_splits])

    @property
    def held_out_splits(self) -> tuple[str, ...]:
        """Splits never trained on, in order; `val` (for selection) excluded."""
        return tuple(s for s in self.splits if s not in self.train_splits and s != "val")
