"""Where the trainer's batches come from.

A `BatchSampler` hands out (tokens, labels) batches and can save and restore its position,
which the trainer stores with each checkpoint's trainer state, so a resumed run draws
exactly the batches an uninterrupted one would. A task family chooses its sampler
(`interp.registry.Family.sampler`): the default, `ShuffledBatches`, walks a fixed training
set (the whole set per step, or reshuffled minibatches); a family with streamed data (e.g.
fresh random walks at every step) returns a sampler that generates batches from its own
seeded generator and saves that generator's state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

#: Keys of the sampler's state in the trainer state file (those of earlier versions).
RNG_KEY, ORDER_KEY, CURSOR_KEY = "rng.data", "data.order", "cursor"


class BatchSampler:
    """The interface: `next_batch`, and `state`/`restore` of everything that decides the next
    batches (tensors go to safetensors, `meta` to JSON)."""

    def next_batch(self) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        raise NotImplementedError

    @staticmethod
    def next_batches(samplers: list[BatchSampler]) -> list[tuple[Tensor, Tensor]]:
        """The next batch of each of several samplers of this class (ensemble members trained
        together, `interp.stacked`): a class may draw them together, as long as each sampler
        gets exactly what its `next_batch` would give."""
        return [sampler.next_batch() for sampler in samplers]

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        raise NotImplementedError


class ShuffledBatches(BatchSampler):
    """The training examples, all at once (`batch_size` 0 or >= their number) or in
    minibatches of a fresh seeded permutation per epoch (a partial last batch is skipped)."""

    def __init__(
        self, tokens: Tensor, labels: Tensor, batch_size: int, seed: int, device: torch.device
    ):
        self.tokens, self.labels = tokens.to(device), labels.to(device)
        self.batch_size, self.device = batch_size, device
        self.generator = torch.Generator().manual_seed(seed)
        self.order: Tensor | None = None
        self.cursor = 0

    def next_batch(self) -> tuple[Tensor, Tensor]:
        size, n = self.batch_size, len(self.labels)
        if size == 0 or size >= n:
            return self.tokens, self.labels
        if self.order is None or self.cursor + size > n:
            self.order = torch.randperm(n, generator=self.generator).to(self.device)
            self.cursor = 0
        index = self.order[self.cursor : self.cursor + size]
        self.cursor += size
        return self.tokens[index], self.labels[index]

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {RNG_KEY: self.generator.get_state()}
        if self.order is not None:
            tensors[ORDER_KEY] = self.order.detach().cpu().clone()
        return tensors, {CURSOR_KEY: self.cursor}

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        self.generator.set_state(tensors[RNG_KEY])
        self.order = tensors[ORDER_KEY].to(self.device) if ORDER_KEY in tensors else None
        self.cursor = int(meta[CURSOR_KEY])
