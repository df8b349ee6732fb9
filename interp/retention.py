"""Checkpoint retention: which checkpoints a finished run keeps (`train.keep_checkpoints`).

A `demo` run writes 76 checkpoints (63 MB); a sweep of 75 such runs would take 5 GB. The
policies:

- ``all``: keep every checkpoint (the default of a single `interp train`).
- ``events``: keep `LOG_SPACED` checkpoints log-spaced over the run (and step 0), plus, around
  every *event*, the checkpoint at it and the one before: an accuracy column (any metric
  named ``*_acc``) first rising through 50 % or 99 %, first falling back through it after
  that, and its last crossing; and every collapse the trainer recorded. This keeps the
  transition resolved on a slider while a demo run shrinks to ~20 checkpoints (the default of
  `interp sweep run`).
- ``final``: keep only the last checkpoint.

Whatever the policy, the last checkpoint (resume and every "final" metric read it), the
manifest's `best` one and every checkpoint that another run starts from (a *pin*, written by
`interp.init_from` into `pins/` of the source run) are kept. metrics.jsonl is never pruned:
every evaluation stays in the table. Pruning runs when a run ends; it rewrites the manifest
first (atomically) and deletes files after, so a kill in between leaves unlisted files, never
a listed file that is missing; the manifest records what was pruned.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp import runs

POLICIES = ("all", "events", "final")
#: Log-spaced checkpoints kept by the "events" policy (besides step 0).
LOG_SPACED = 12
#: Accuracy levels whose crossings are events.
LEVELS = (0.5, 0.99)
PIN_DIR = "pins"


@dataclass(frozen=True)
class Pruned:
    kept: tuple[int, ...]
    removed: tuple[int, ...]
    bytes_freed: int


def log_spaced(steps: Sequence[int], count: int = LOG_SPACED) -> set[int]:
    """Step 0 (if present) and the existing steps nearest to `count` log-spaced points."""
    positive = sorted(s for s in steps if s > 0)
    kept = {s for s in steps if s == 0}
    if not positive:
        return kept
    lo, hi = math.log(positive[0]), math.log(positive[-1])
    for i in range(count):
        target = math.exp(lo + (hi - lo) * i / max(count - 1, 1))
        kept.add(min(positive, key=lambda s: (abs(math.log(s) - math.log(target)), s)))
    return kept


def _crossings(rows: Sequence[dict[str, Any]], column: str, level: float) -> set[int]:
    """The first rise through `level`, the first fall back after it, and the last crossing."""
    values = [(int(r["step"]), r[column]) for r in rows if isinstance(r.get(column), (int, float))]
    ups, downs = [], []
    for (_, before), (step, after) in zip(values, values[1:]):
        if before < level <= after:
            ups.append(step)
        elif before >= level > after:
            downs.append(step)
    found = set(ups[:1]) | set([d for d in downs if ups and d > ups[0]][:1])
    if ups or downs:
        found.add(max(ups + downs))
    return found


def event_steps(rows: Sequence[dict[str, Any]]) -> set[int]:
    """Steps of the events the "events" policy keeps checkpoints around (module docstring)."""
    columns = sorted({k for r in rows for k in r if k.endswith("_acc")})
    found = {s for c in columns for level in LEVELS for s in _crossings(rows, c, level)}
    for row in rows:
        for event in row.get("events", ()) or ():
            found.update(int(event[k]) for k in ("first_step", "step") if k in event)
    return found


def kept_steps(
    steps: Sequence[int],
    rows: Sequence[dict[str, Any]],
    policy: str,
    *,
    protected: Iterable[int] = (),
) -> set[int]:
    """The checkpoints `policy` keeps among `steps`; `protected` ones (best, pinned) always."""
    steps = sorted(steps)
    if policy not in POLICIES:
        raise ValueError(f"retention policy must be one of {POLICIES}, got {policy!r}")
    if policy == "all" or not steps:
        return set(steps)
    keep = {steps[-1]} | (set(protected) & set(steps))
    if policy == "events":
        keep |= log_spaced(steps)
        for event in event_steps(rows):
            at = next((s for s in steps if s >= event), steps[-1])
            before = [s for s in steps if s < at]
            keep |= {at, *before[-1:]}
    return keep


# -- pins: checkpoints another run starts from ------------------------------------------------
def pin(source_dir: Path, step: int, by: Path) -> None:
    """Record in `source_dir` that the run in `by` starts from its checkpoint `step`."""
    name = hashlib.sha256(str(by.resolve()).encode()).hexdigest()[:16] + ".json"
    runs.atomic_write_json(
        source_dir / PIN_DIR / name, {"step": int(step), "by": str(by.resolve())}
    )


def pinned_steps(run_dir: Path) -> set[int]:
    found = set()
    for path in sorted((run_dir / PIN_DIR).glob("*.json")):
        try:
            found.add(int(json.loads(path.read_text())["step"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable pin protects nothing it cannot name
    return found


def prune(run_dir: str | Path, policy: str) -> Pruned:
    """Apply `policy` to a run folder whose writer lock the caller holds (or that nobody
    writes). The manifest is rewritten first, then the files it no longer lists are
    deleted."""
    run_dir = Path(run_dir)
    entries = runs.read_manifest(run_dir)
    steps = [e["step"] for e in entries]
    best = runs.read_best(run_dir)
    protected = pinned_steps(run_dir) | ({int(best["step"])} if best else set())
    keep = kept_steps(steps, runs.read_metrics(run_dir), policy, protected=protected)
    removed = [e for e in entries if e["step"] not in keep]
    if not removed:
        return Pruned(tuple(sorted(keep)), (), 0)
    manifest = json.loads((run_dir / runs.MANIFEST_FILE).read_text())
    before = manifest.get("retention", {})
    manifest["checkpoints"] = [e for e in entries if e["step"] in keep]
    manifest["retention"] = {
        "policy": policy,
        "pruned": int(before.get("pruned", 0)) + len(removed),
    }
    runs.atomic_write_json(run_dir / runs.MANIFEST_FILE, manifest)
    freed = 0
    for entry in removed:
        path = run_dir / entry["file"]
        try:
            freed += path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            pass
    return Pruned(tuple(sorted(keep)), tuple(e["step"] for e in removed), freed)
