"""Token layout of the entity tasks: one token per entity, relation/attribute and value.

The layout is a few contiguous blocks, in this order:

    [entities | relations (two_hop) or attributes (comparison) | values (comparison) | specials]

Specials are `<end>` (the filler that ends an atomic fact, so atomic facts and inferred
facts share one length and the answer is always read at the last position) and, for
comparison, the three answers `<`, `=`, `>`. The output vocabulary is the whole vocabulary,
so input and output embeddings can be tied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

END = "<end>"
COMPARISON_ANSWERS = ("<", "=", ">")


@dataclass(frozen=True)
class EntityVocab:
    n_entities: int
    n_relations: int  # relations for two_hop, attributes for comparison
    n_values: int = 0  # comparison only; > 0 marks the comparison layout

    @classmethod
    def for_config(cls, config) -> EntityVocab:
        return cls(*config.entity_sizes())

    @property
    def compares(self) -> bool:
        """The comparison layout: value tokens and the answers `<`, `=`, `>`."""
        return self.n_values > 0

    # -- block offsets -----------------------------------------------------------------------
    @property
    def relation_offset(self) -> int:
        return self.n_entities

    @property
    def value_offset(self) -> int:
        return self.n_entities + self.n_relations

    @property
    def end_token(self) -> int:
        return self.value_offset + self.n_values

    @property
    def answer_offset(self) -> int:
        """First of `<`, `=`, `>` (comparison only)."""
        return self.end_token + 1

    @property
    def d_vocab(self) -> int:
        return self.end_token + 1 + (len(COMPARISON_ANSWERS) if self.compares else 0)

    # -- token ids -----------------------------------------------------------------------------
    def entity(self, index: Tensor | int) -> Tensor | int:
        return index

    def relation(self, index: Tensor | int) -> Tensor | int:
        return index + self.relation_offset

    def value(self, index: Tensor | int) -> Tensor | int:
        return index + self.value_offset

    def answer(self, sign: Tensor) -> Tensor:
        """Comparison answer token for sign(v1 - v2) in {-1, 0, 1}."""
        return sign + 1 + self.answer_offset

    @property
    def entity_tokens(self) -> Tensor:
        return torch.arange(self.n_entities)

    @property
    def value_tokens(self) -> Tensor:
        return torch.arange(self.n_values) + self.value_offset

    @property
    def answer_tokens(self) -> Tensor:
        return torch.arange(len(COMPARISON_ANSWERS)) + self.answer_offset

    def token_names(
        self,
        entities: list[str] | None = None,
        relations: list[str] | None = None,
        values: list[str] | None = None,
    ) -> tuple[str, ...]:
        rel_prefix = "a" if self.compares else "r"
        names = list(entities or [f"e{i}" for i in range(self.n_entities)])
        names += relations or [f"{rel_prefix}{i}" for i in range(self.n_relations)]
        names += values or [f"v{i}" for i in range(self.n_values)]
        names.append(END)
        if self.compares:
            names += list(COMPARISON_ANSWERS)
        assert len(names) == self.d_vocab
        return tuple(names)
