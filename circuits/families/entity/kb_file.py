"""Bring your own facts: a knowledge base read from a JSONL or CSV file (`task.kb_file`).

two_hop: one atomic fact per line, `{"head": "alice", "relation": "mother", "tail": "carol"}`
(CSV: a header `head,relation,tail`). Every name becomes one token; entities are the heads
and tails, in order of first appearance; a (head, relation) pair has exactly one tail.

comparison: one attribute value per line, `{"entity": "alice", "attribute": "age", "value": 42}`
(CSV: `entity,attribute,value`). Values are numbers; the distinct values, sorted, become
the ordinal value tokens.

JSONL files may also hold queries, which become a held-out `query` split (never trained):
`{"query": ["alice", "mother", "father"]}` (two_hop: head, r1, r2) or
`{"query": ["age", "alice", "bob"]}` (comparison: attribute, e1, e2).

Inferred facts and the train / test-ID / test-OOD split are derived exactly as for the
synthetic knowledge bases (`two_hop.py`, `comparison.py`). Blank lines are skipped. Every
problem raises `KBFileError` naming the file and line: an unknown or missing field, a bad
value, a contradictory duplicate fact, an unknown entity or relation in a query, an empty file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from interp.config import ConfigError

#: The two file layouts: relational facts (two-hop composition) and attribute values (comparison).
Layout = Literal["facts", "values"]
FIELDS: dict[str, tuple[str, str, str]] = {
    "facts": ("head", "relation", "tail"),
    "values": ("entity", "attribute", "value"),
}


class KBFileError(ConfigError):
    """The knowledge-base file is invalid; the message names the file and the line."""


@dataclass(frozen=True)
class KnowledgeBase:
    #: two_hop: kb_tail [entity, relation]; comparison: kb_value [entity, attribute] (value ranks);
    #: -1 = none.
    table: Tensor
    #: (entities, relations) or (entities, attributes, values), in token order.
    names: tuple[list[str], ...]
    #: (a, b, c, line) token-free indices of the queries: (h, r1, r2) or (attribute, e1, e2).
    queries: list[tuple[int, int, int, int]] = field(default_factory=list)


def kb_sizes(path: str, layout: Layout) -> tuple[int, int, int]:
    """(entities, relations or attributes, values; 0 for facts) of a knowledge-base file."""
    kb = load_kb(path, layout)
    return len(kb.names[0]), len(kb.names[1]), len(kb.names[2]) if len(kb.names) > 2 else 0


def load_kb(path: str, layout: Layout) -> KnowledgeBase:
    file = Path(path)
    if not file.is_file():
        raise KBFileError(f"task.kb_file: {path}: no such file")
    stat = file.stat()
    return _load_kb(str(file.resolve()), layout, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_kb(path: str, layout: Layout, _mtime: int, _size: int) -> KnowledgeBase:
    records = list(_read_records(Path(path), layout))
    facts = [(line, rec) for line, rec in records if "query" not in rec]
    if not facts:
        raise KBFileError(f"{path}: empty file: no facts")
    if layout == "facts":
        return _two_hop_kb(path, facts, [(line, rec) for line, rec in records if "query" in rec])
    return _comparison_kb(path, facts, [(line, rec) for line, rec in records if "query" in rec])


def _read_records(path: Path, layout: Layout):
    """(line number, record) for every non-blank line, fields checked."""
    expected = FIELDS[layout]
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        reader = csv.reader(io.StringIO(text))
        header = None
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                for name in header:
                    if name not in expected:
                        raise KBFileError(
                            f"{path}:{line}: unknown field {name!r}; expected {', '.join(expected)}"
                        )
                for name in expected:
                    if name not in header:
                        raise KBFileError(f"{path}:{line}: missing field {name!r} in the header")
                continue
            if len(row) != len(header):
                raise KBFileError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
            yield (
                line,
                _check_fields(path, line, dict(zip(header, (c.strip() for c in row))), layout),
            )
        return
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise KBFileError(f"{path}:{line}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise KBFileError(f"{path}:{line}: expected a JSON object, got {type(record).__name__}")
        yield line, _check_fields(path, line, record, layout)


def _check_fields(path: Path, line: int, record: dict, layout: Layout) -> dict:
    expected = FIELDS[layout]
    if "query" in record:
        extra = sorted(set(record) - {"query"})
        if extra:
            raise KBFileError(f"{path}:{line}: unknown field {extra[0]!r} in a query line")
        query = record["query"]
        if not (
            isinstance(query, list)
            and len(query) == 3
            and all(isinstance(q, str) and q for q in query)
        ):
            raise KBFileError(
                f"{path}:{line}: bad value for 'query': expected a list of 3 names, got {query!r}"
            )
        return record
    for name in record:
        if name not in expected:
            raise KBFileError(
                f"{path}:{line}: unknown field {name!r}; expected {', '.join(expected)}"
            )
    for name in expected:
        if name not in record:
            raise KBFileError(f"{path}:{line}: missing field {name!r}")
    names = expected if layout == "facts" else expected[:2]
    for name in names:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
            raise KBFileError(
                f"{path}:{line}: bad value for {name!r}: expected a non-empty name, got {value!r}"
            )
        record[name] = str(value).strip()
    if layout == "values":
        value = record["value"]
        try:
            number = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise KBFileError(
                f"{path}:{line}: bad value for 'value': expected a finite number, got {value!r}"
            )
        record["value"] = number
    return record


def _index(names: list[str], lookup: dict[str, int], name: str) -> int:
    if name not in lookup:
        lookup[name] = len(names)
        names.append(name)
    return lookup[name]


def _known(lookup: dict[str, int], name: str, what: str, path: str, line: int) -> int:
    """The index of a name a query uses; unknown names are a KBFileError naming the line."""
    if name not in lookup:
        raise KBFileError(f"{path}:{line}: unknown {what} {name!r} in a query")
    return lookup[name]


def _two_hop_kb(path: str, facts, queries) -> KnowledgeBase:
    entities: list[str] = []
    relations: list[str] = []
    e_ix: dict[str, int] = {}
    r_ix: dict[str, int] = {}
    seen: dict[tuple[int, int], tuple[int, int]] = {}  # (h, r) -> (t, line)
    for line, rec in facts:
        h, r, t = (
            _index(entities, e_ix, rec["head"]),
            _index(relations, r_ix, rec["relation"]),
            _index(entities, e_ix, rec["tail"]),
        )
        if (h, r) in seen and seen[h, r][0] != t:
            other_t, other_line = seen[h, r]
            raise KBFileError(
                f"{path}:{line}: contradicts line {other_line}: ({rec['head']}, {rec['relation']}) "
                "-> "
                f"{rec['tail']!r} here but {entities[other_t]!r} there"
            )
        seen.setdefault((h, r), (t, line))
    table = torch.full((len(entities), len(relations)), -1, dtype=torch.long)
    for (h, r), (t, _) in seen.items():
        table[h, r] = t
    asked = []
    for line, rec in queries:
        h, r1, r2 = rec["query"]
        asked.append(
            (
                _known(e_ix, h, "entity", path, line),
                _known(r_ix, r1, "relation", path, line),
                _known(r_ix, r2, "relation", path, line),
                line,
            )
        )
    return KnowledgeBase(table, (entities, relations), asked)


def _comparison_kb(path: str, facts, queries) -> KnowledgeBase:
    entities: list[str] = []
    attributes: list[str] = []
    e_ix: dict[str, int] = {}
    a_ix: dict[str, int] = {}
    seen: dict[tuple[int, int], tuple[float, int]] = {}
    for line, rec in facts:
        e, a = _index(entities, e_ix, rec["entity"]), _index(attributes, a_ix, rec["attribute"])
        if (e, a) in seen and seen[e, a][0] != rec["value"]:
            other, other_line = seen[e, a]
            raise KBFileError(
                f"{path}:{line}: contradicts line {other_line}: ({rec['entity']}, "
                f"{rec['attribute']}) = "
                f"{rec['value']:g} here but {other:g} there"
            )
        seen.setdefault((e, a), (rec["value"], line))
    values = sorted({v for v, _ in seen.values()})
    rank = {v: i for i, v in enumerate(values)}
    table = torch.full((len(entities), len(attributes)), -1, dtype=torch.long)
    for (e, a), (v, _) in seen.items():
        table[e, a] = rank[v]
    asked = []
    for line, rec in queries:
        a, e1, e2 = rec["query"]
        asked.append(
            (
                _known(a_ix, a, "attribute", path, line),
                _known(e_ix, e1, "entity", path, line),
                _known(e_ix, e2, "entity", path, line),
                line,
            )
        )
    value_names = [f"{v:g}" for v in values]
    return KnowledgeBase(table, (entities, attributes, value_names), asked)
