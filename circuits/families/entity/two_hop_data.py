"""Two-hop composition over a knowledge graph (Wang et al. 2024, ANCHORS §2).

Atomic facts (h, r, t); the rule (h, r1, b) ∧ (b, r2, t) ⇒ (h, r1, r2, t) with bridge b.

Format (n_ctx = 3, the answer is read at the last position; one token per entity and relation):

    atomic    h  r   <end>   -> t
    inferred  h  r1  r2      -> t

`<end>` pads atomic facts to the inferred length on the right, so the head and the first
relation sit at the same positions (0 and 1) in both: the first hop an atomic fact teaches
is the first hop of an inferred fact, and the bridge of an inferred fact is expected at the
r1 position (`POS_R1`).

Split (Wang et al.): a fraction `ood_frac` of the atomic facts is OOD; every atomic fact is
trained (`train_atomic`). Inferred facts whose two hops are both ID are shuffled: the first
`min(max_eval, test_id_frac * n)` are `test_id`, and `phi * |ID atomic|` of the rest are
`train_inferred`. Inferred facts whose two hops are both OOD are `test_ood` (at most
`max_eval`); mixed ones are dropped. Everything is seeded by `split_seed`.

`extras` (per example, -1 where not applicable): `head`, `r1`, `r2` (relation indices; an
atomic fact's relation is its `r1`), `bridge`; and the tables `kb_tail [entity, relation]`
(-1 = no fact) and `kb_is_ood [entity, relation]`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.families.entity.vocab import EntityVocab
from interp.config import ConfigError, TaskConfig
from interp.tasks.base import TaskData

POS_HEAD, POS_R1, POS_R2 = 0, 1, 2
SPLITS = ("train_atomic", "train_inferred", "test_id", "test_ood")
TRAIN_SPLITS = ("train_atomic", "train_inferred")


def random_graph(config: TaskConfig, generator: torch.Generator) -> Tensor:
    """kb_tail [entity, relation]: each entity gets `out_degree` distinct relations to random
    entities."""
    n_e, n_r, degree = config.n_entities, config.n_relations, config.out_degree
    relations = torch.rand(n_e, n_r, generator=generator).argsort(dim=1)[:, :degree]
    tails = torch.randint(0, n_e, (n_e, degree), generator=generator)
    kb_tail = torch.full((n_e, n_r), -1, dtype=torch.long)
    kb_tail.scatter_(1, relations, tails)
    return kb_tail


def build_two_hop(config: TaskConfig) -> TaskData:
    if config.kb_file:
        from circuits.families.entity.kb_file import load_kb

        kb = load_kb(config.kb_file, "facts")
        return two_hop_from_kb(config, kb.table, names=kb.names, queries=kb.queries)
    generator = torch.Generator().manual_seed(config.split_seed)
    return two_hop_from_kb(config, random_graph(config, generator), generator=generator)


def two_hop_from_kb(
    config: TaskConfig,
    kb_tail: Tensor,
    *,
    names: tuple[list[str], list[str]] | None = None,
    queries: list[tuple[int, int, int, int]] = (),
    generator: torch.Generator | None = None,
) -> TaskData:
    """Build the dataset from a tail table. `queries` are (h, r1, r2, line) triples the user
    asked about: they become a held-out `query` split and are never trained."""
    if generator is None:
        generator = torch.Generator().manual_seed(config.split_seed)
    n_e, n_r = kb_tail.shape
    vocab = EntityVocab(n_e, n_r)

    # Atomic facts in (head, relation) order; a random ood_frac of them is OOD.
    heads, rels = torch.nonzero(kb_tail >= 0, as_tuple=True)
    tails = kb_tail[heads, rels]
    n_atomic = len(heads)
    if n_atomic == 0:
        raise ConfigError("task: the knowledge base has no atomic facts")
    n_ood = int(round(config.ood_frac * n_atomic))
    is_ood_fact = torch.zeros(n_atomic, dtype=torch.bool)
    is_ood_fact[torch.randperm(n_atomic, generator=generator)[:n_ood]] = True
    kb_is_ood = torch.zeros_like(kb_tail, dtype=torch.bool)
    kb_is_ood[heads, rels] = is_ood_fact

    # Every inferred fact: first hop = an atomic fact, second hop = any fact of its tail.
    first = torch.arange(n_atomic).repeat_interleave(n_r)
    r2 = torch.arange(n_r).repeat(n_atomic)
    bridge = tails[first]
    answer = kb_tail[bridge, r2]
    exists = answer >= 0
    first, r2, bridge, answer = first[exists], r2[exists], bridge[exists], answer[exists]
    ood1, ood2 = is_ood_fact[first], kb_is_ood[bridge, r2]
    inferred = torch.stack([heads[first], rels[first], r2, bridge, answer], dim=1)  # h r1 r2 b t

    query_rows = _query_rows(queries, kb_tail, config.kb_file)
    if len(query_rows):
        asked = set(map(tuple, query_rows[:, :3].tolist()))
        keep = torch.tensor(
            [tuple(row) not in asked for row in inferred[:, :3].tolist()], dtype=torch.bool
        )
        inferred, ood1, ood2 = inferred[keep], ood1[keep], ood2[keep]

    in_id = inferred[~ood1 & ~ood2]
    in_id = in_id[torch.randperm(len(in_id), generator=generator)]
    n_id_atomic = n_atomic - n_ood
    n_test = min(config.max_eval, max(1, int(round(config.test_id_frac * len(in_id)))))
    n_train = int(round(config.phi * n_id_atomic))
    if n_test + n_train > len(in_id):
        max_phi = (len(in_id) - n_test) / max(1, n_id_atomic)
        raise ConfigError(
            f"task.phi: {config.phi} needs {n_train} training inferred facts, but only "
            f"{len(in_id) - n_test} ID inferred facts remain after test-ID; use phi <= "
            f"{max_phi:.2f} "
            "or a larger knowledge base"
        )
    test_id, train_inferred = in_id[:n_test], in_id[n_test : n_test + n_train]
    in_ood = inferred[ood1 & ood2]
    test_ood = in_ood[torch.randperm(len(in_ood), generator=generator)[: config.max_eval]]

    end = vocab.end_token
    atomic_tokens = torch.stack([heads, vocab.relation(rels), torch.full_like(heads, end)], dim=1)
    parts = {
        "train_atomic": (
            atomic_tokens,
            tails,
            heads,
            rels,
            torch.full_like(heads, -1),
            torch.full_like(heads, -1),
        )
    }
    named = {"train_inferred": train_inferred, "test_id": test_id, "test_ood": test_ood}
    if len(query_rows):
        named["query"] = query_rows
    for name, rows in named.items():
        h, r1_, r2_, b, t = (
            rows.unbind(dim=1) if len(rows) else [torch.zeros(0, dtype=torch.long)] * 5
        )
        parts[name] = (
            torch.stack([h, vocab.relation(r1_), vocab.relation(r2_)], dim=1),
            t,
            h,
            r1_,
            r2_,
            b,
        )

    tokens, labels, splits, cols, start = [], [], {}, [[], [], [], []], 0
    for name, (tok, lab, *extra) in parts.items():
        tokens.append(tok.reshape(-1, 3))
        labels.append(lab)
        splits[name] = torch.arange(start, start + len(lab))
        start += len(lab)
        for col, value in zip(cols, extra):
            col.append(value)
    head_, r1_, r2_, bridge_ = (torch.cat(c) for c in cols)
    entity_names, relation_names = names if names is not None else (None, None)
    return TaskData(
        tokens=torch.cat(tokens),
        labels=torch.cat(labels),
        splits=splits,
        train_splits=TRAIN_SPLITS,
        token_names=vocab.token_names(entity_names, relation_names),
        extras={
            "head": head_,
            "r1": r1_,
            "r2": r2_,
            "bridge": bridge_,
            "kb_tail": kb_tail.clone(),
            "kb_is_ood": kb_is_ood,
        },
    )


def _query_rows(queries, kb_tail: Tensor, kb_file: str) -> Tensor:
    """(h, r1, r2, b, t) rows for the asked queries; the answer must follow from the facts."""
    rows = []
    for h, r1, r2, line in queries:
        b = int(kb_tail[h, r1])
        t = int(kb_tail[b, r2]) if b >= 0 else -1
        if t < 0:
            raise ConfigError(f"{kb_file}:{line}: query has no answer: the facts do not compose")
        rows.append((h, r1, r2, b, t))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 5)
