"""Entity comparison over ordinal attribute values (Wang et al. 2024, ANCHORS §2).

Every (entity, attribute) has a value in 0..n_values-1 (ordinal). A comparison asks how
the values of two entities on one attribute compare.

Format (n_ctx = 3, the answer is read at the last position):

    atomic      attr  e   <end>  -> v            (the value token)
    comparison  attr  e1  e2     -> < | = | >    (sign of v(e1) - v(e2))

Atomic facts put the entity at the e1 position (1), so the value lookup an atomic fact
teaches is the one the comparison needs at e1 (`POS_E1`); v2 has to be retrieved at the
e2 position (`POS_E2`) from comparisons alone.

Split (Wang et al.): per attribute, a fraction `ood_frac` of the entities is OOD. All
atomic facts are trained (`train_atomic`). Comparisons of two distinct ID entities: the
first `min(max_eval, test_id_frac * n)` of a random order are `test_id`, and
`phi * |ID atomic|` of the rest are `train_inferred`. Comparisons of two OOD entities are
`test_ood` (at most `max_eval`). Everything is seeded by `split_seed`.

`extras` (per example, -1 where not applicable): `attribute`, `e1`, `e2`, `v1`, `v2`
(value indices; an atomic fact's entity and value are its `e1`, `v1`); and the tables
`kb_value [entity, attribute]` (-1 = unknown) and `kb_is_ood [entity, attribute]`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from circuits.families.entity.vocab import EntityVocab
from interp.config import ConfigError, TaskConfig
from interp.tasks.base import TaskData

POS_ATTR, POS_E1, POS_E2 = 0, 1, 2
SPLITS = ("train_atomic", "train_inferred", "test_id", "test_ood")
TRAIN_SPLITS = ("train_atomic", "train_inferred")
#: Enumerate all candidate pairs below this many; sample with rejection above.
_ENUMERATE_LIMIT = 1 << 22


def build_comparison(config: TaskConfig) -> TaskData:
    if config.kb_file:
        from circuits.families.entity.kb_file import load_kb

        kb = load_kb(config.kb_file, "values")
        return comparison_from_kb(config, kb.table, names=kb.names, queries=kb.queries)
    generator = torch.Generator().manual_seed(config.split_seed)
    kb_value = torch.randint(
        0, config.n_values, (config.n_entities, config.n_attributes), generator=generator
    )
    return comparison_from_kb(config, kb_value, n_values=config.n_values, generator=generator)


def comparison_from_kb(
    config: TaskConfig,
    kb_value: Tensor,
    *,
    n_values: int | None = None,
    names: tuple[list[str], list[str], list[str]] | None = None,
    queries: list[tuple[int, int, int, int]] = (),
    generator: torch.Generator | None = None,
) -> TaskData:
    """Build the dataset from a value table [entity, attribute] (-1 = unknown).
    `queries` are (attr, e1, e2, line): a held-out `query` split, never trained."""
    if generator is None:
        generator = torch.Generator().manual_seed(config.split_seed)
    n_e, n_a = kb_value.shape
    if n_values is None:
        n_values = len(names[2]) if names is not None else int(kb_value.max()) + 1
    vocab = EntityVocab(n_e, n_a, n_values)

    known = kb_value >= 0
    kb_is_ood = torch.zeros_like(known)
    id_members, ood_members = [], []
    for a in range(n_a):
        members = torch.nonzero(known[:, a]).squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)]
        n_ood = int(round(config.ood_frac * len(members)))
        kb_is_ood[members[:n_ood], a] = True
        ood_members.append(members[:n_ood].sort().values)
        id_members.append(members[n_ood:].sort().values)

    ents, attrs = torch.nonzero(known, as_tuple=True)  # atomic facts, entity-major
    n_atomic = len(ents)
    if n_atomic == 0:
        raise ConfigError("task: the knowledge base has no atomic facts")
    n_id_atomic = int((known & ~kb_is_ood).sum())

    query_rows = _query_rows(queries, kb_value, config.kb_file)
    asked = {tuple(r) for r in query_rows[:, :3].tolist()}
    n_id_pairs = sum(len(m) * (len(m) - 1) for m in id_members)
    n_test = min(config.max_eval, max(1, int(round(config.test_id_frac * n_id_pairs))))
    n_train = int(round(config.phi * n_id_atomic))
    if n_test + n_train > n_id_pairs - len(asked):
        max_phi = (n_id_pairs - len(asked) - n_test) / max(1, n_id_atomic)
        raise ConfigError(
            f"task.phi: {config.phi} needs {n_train} training comparisons, but only "
            f"{n_id_pairs - n_test} ID comparisons remain after test-ID; use phi <= {max_phi:.2f} "
            "or a larger knowledge base"
        )
    in_id = _sample_pairs(id_members, n_test + n_train, generator, exclude=asked)
    test_id, train_inferred = in_id[:n_test], in_id[n_test:]
    n_ood_pairs = sum(len(m) * (len(m) - 1) for m in ood_members)
    test_ood = _sample_pairs(
        ood_members, min(config.max_eval, n_ood_pairs), generator, exclude=asked
    )

    def comparisons(rows: Tensor):
        a, e1, e2 = rows.unbind(dim=1)
        v1, v2 = kb_value[e1, a], kb_value[e2, a]
        tokens = torch.stack([vocab.relation(a), e1, e2], dim=1)
        return tokens, vocab.answer(torch.sign(v1 - v2)), a, e1, e2, v1, v2

    values = kb_value[ents, attrs]
    none = torch.full_like(ents, -1)
    atomic_tokens = torch.stack(
        [vocab.relation(attrs), ents, torch.full_like(ents, vocab.end_token)], dim=1
    )
    parts = {
        "train_atomic": (atomic_tokens, vocab.value(values), attrs, ents, none, values, none),
        "train_inferred": comparisons(train_inferred),
        "test_id": comparisons(test_id),
        "test_ood": comparisons(test_ood),
    }
    if len(query_rows):
        parts["query"] = comparisons(query_rows[:, :3])

    tokens, labels, splits, cols, start = [], [], {}, [[] for _ in range(5)], 0
    for name, (tok, lab, *extra) in parts.items():
        tokens.append(tok)
        labels.append(lab)
        splits[name] = torch.arange(start, start + len(lab))
        start += len(lab)
        for col, value in zip(cols, extra):
            col.append(value)
    attribute, e1, e2, v1, v2 = (torch.cat(c) for c in cols)
    entity_names, attribute_names, value_names = names if names is not None else (None, None, None)
    return TaskData(
        tokens=torch.cat(tokens),
        labels=torch.cat(labels),
        splits=splits,
        train_splits=TRAIN_SPLITS,
        token_names=vocab.token_names(entity_names, attribute_names, value_names),
        extras={
            "attribute": attribute,
            "e1": e1,
            "e2": e2,
            "v1": v1,
            "v2": v2,
            "kb_value": kb_value.clone(),
            "kb_is_ood": kb_is_ood,
        },
    )


def _sample_pairs(
    members: list[Tensor],
    k: int,
    generator: torch.Generator,
    exclude: set[tuple[int, int, int]] = frozenset(),
) -> Tensor:
    """k distinct (attribute, e1, e2) rows, e1 != e2 both in `members[attribute]`, in random
    order."""
    sizes = torch.tensor([len(m) for m in members], dtype=torch.long)
    grid = sizes * sizes
    offsets = torch.cumsum(grid, 0) - grid
    total = int(grid.sum())
    if k <= 0 or total == 0:
        return torch.zeros(0, 3, dtype=torch.long)
    if total <= _ENUMERATE_LIMIT:
        codes = torch.randperm(total, generator=generator)
    else:
        draws = []
        for _ in range(100):
            draws.append(torch.randint(0, total, (2 * k + 64,), generator=generator))
            codes = torch.unique(torch.cat(draws))
            if len(codes) >= 1.5 * k + 64:
                break
        codes = codes[torch.randperm(len(codes), generator=generator)]
    attr = torch.searchsorted(offsets, codes, right=True) - 1
    local = codes - offsets[attr]
    i, j = local // sizes[attr], local % sizes[attr]
    keep = i != j
    attr, i, j = attr[keep], i[keep], j[keep]
    flat = torch.cat([m for m in members]) if members else torch.zeros(0, dtype=torch.long)
    starts = torch.cumsum(sizes, 0) - sizes
    rows = torch.stack([attr, flat[starts[attr] + i], flat[starts[attr] + j]], dim=1)
    if exclude:
        rows = rows[: k + len(exclude)]
        rows = rows[
            torch.tensor([tuple(r) not in exclude for r in rows.tolist()], dtype=torch.bool)
        ]
    if len(rows) < k:  # pragma: no cover - only when rejection sampling runs dry
        raise ConfigError(f"task: could only sample {len(rows)} of {k} distinct comparisons")
    return rows[:k]


def _query_rows(queries, kb_value: Tensor, kb_file: str) -> Tensor:
    rows = []
    for a, e1, e2, line in queries:
        if kb_value[e1, a] < 0 or kb_value[e2, a] < 0:
            raise ConfigError(f"{kb_file}:{line}: query has no answer: a compared value is unknown")
        rows.append((a, e1, e2, line))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 4)
