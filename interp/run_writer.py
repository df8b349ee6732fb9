"""The one writer of run folders: `interp train` and `interp import` write the same files through
it.

The layout and the file names are `interp.runs`'s; every file goes through its atomic writes
(temp file, fsync, rename), so a reader sees either the old file or the new one. A checkpoint
counts once the manifest lists it, so a writer keeps this order:

    write_header(run_dir, config, task)            config.json and split.safetensors, once
    entry = write_weights(run_dir, step, weights)  checkpoints/step_*.safetensors
    ... whatever must exist with the checkpoint    (the trainer's state, `interp.trainer_state`)
    write_metrics(run_dir, rows)                   metrics.jsonl, every row so far
    write_manifest(run_dir, entries, rows, task)   manifest.json, last: the checkpoint now counts

The trainer holds the run's writer lock (`interp.runs.acquire_writer_lock`) while it writes;
the importer writes a fresh staging folder that it renames into place when complete.
`relist_checkpoints` rebuilds a lost manifest the same way.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import Tensor

from interp import runs
from interp.collapse import best_checkpoint
from interp.config import RunConfig
from interp.errors import RunExists, TrainingError
from interp.tasks import TaskData


def prepare_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Refuse to write into a non-empty folder unless `overwrite` (and then only over a run)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise TrainingError(f"{run_dir}: exists and is not a folder", argument="out")
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise RunExists(run_dir)
        if not (run_dir / runs.CONFIG_FILE).exists():
            raise TrainingError(
                f"{run_dir}: overwrite=True only replaces a run folder, and this one has no "
                f"{runs.CONFIG_FILE}",
                argument="out",
            )
        try:
            runs.release_writer_lock(runs.acquire_writer_lock(run_dir))
        except runs.RunError as exc:
            raise TrainingError(str(exc), argument="out") from None
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def write_header(run_dir: Path, config: RunConfig, task: TaskData) -> None:
    """config.json (naming the run's own copy of a `task.kb_file`) and the split, before any
    checkpoint."""
    stored = store_kb_file(run_dir, config)
    runs.atomic_write_json(run_dir / runs.CONFIG_FILE, stored.to_dict())
    save_split(run_dir, task)


def store_kb_file(run_dir: Path, config: RunConfig) -> RunConfig:
    """Copy a bring-your-own knowledge base into the run folder (KB_FILE + its suffix) and return
    the config to save, which names the copy: the run then no longer depends on the working
    directory or on later edits of the original file."""
    source = getattr(config.task, "kb_file", "")  # families with a data file (the entity ones)
    if not source:
        return config
    name = runs.KB_FILE + Path(source).suffix.lower()
    try:
        runs.atomic_write_bytes(run_dir / name, Path(source).read_bytes())
    except OSError as exc:
        raise runs.RunError(
            f"task.kb_file: {source}: cannot copy into the run folder: {exc}"
        ) from None
    return replace(config, task=replace(config.task, kb_file=name))


def save_split(run_dir: Path, task: TaskData) -> None:
    """The exact example indices of every split (`interp.runs.load_task` reads them back)."""
    indices = {runs.SPLIT_PREFIX + name: index for name, index in task.splits.items()}
    runs.save_tensors(run_dir / runs.SPLIT_FILE, indices)


def write_weights(run_dir: Path, step: int, weights: dict[str, Tensor]) -> dict[str, Any]:
    """The weights after `step` optimizer steps; returns their manifest entry {step, file,
    sha256}."""
    file = runs.checkpoint_name(step)
    digest = runs.save_tensors(run_dir / file, weights, metadata={"step": str(step)})
    return {"step": step, "file": file, "sha256": digest}


def write_metrics(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """metrics.jsonl: one JSON object per checkpoint, keys sorted."""
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)
    runs.atomic_write_bytes(run_dir / runs.METRICS_FILE, lines.encode())


def write_manifest(
    run_dir: Path, checkpoints: list[dict[str, Any]], rows: list[dict[str, Any]], task: TaskData
) -> None:
    """The manifest: the complete checkpoints and the `best` one, chosen on validation or
    training metrics among `rows` (`interp.collapse.best_checkpoint`), never on a test metric."""
    from interp.registry import get_family

    criterion = get_family(task.kind).best_criterion if task.kind else "val_acc"
    best = best_checkpoint(rows, task.train_splits, "val" in task.splits, criterion)
    data: dict[str, Any] = {"checkpoints": checkpoints}
    if best is not None:
        data["best"] = best.to_dict()
    runs.atomic_write_json(run_dir / runs.MANIFEST_FILE, data)


def relist_checkpoints(run_dir: str | Path) -> tuple[list[int], list[runs.Skipped]]:
    """Rebuild a lost manifest from the checkpoint files that load.

    Each `checkpoints/step_*.safetensors` is read, its step taken from the file name, and
    loaded into a model of the run's shape; only those that load with finite weights are
    listed, with their sha256 computed now. Returns (steps listed, files left out).
    """
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    if (run_dir / runs.MANIFEST_FILE).exists() and runs.read_manifest(run_dir):
        raise runs.RunError(
            f"{run_dir / runs.MANIFEST_FILE}: exists and lists checkpoints; nothing to relist"
        )
    candidates = []
    for path in sorted((run_dir / runs.CHECKPOINT_DIR).glob("step_*.safetensors")):
        try:
            step = int(path.stem.removeprefix("step_"))
        except ValueError:
            continue
        candidates.append(
            {
                "step": step,
                "file": f"{runs.CHECKPOINT_DIR}/{path.name}",
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    run = runs.Run(path=run_dir, config=config, manifest=candidates)
    skipped: list[runs.Skipped] = []
    loaded = {step for step, _ in run.iter_models(on_error=skipped.append)}
    kept = [entry for entry in candidates if entry["step"] in loaded]
    write_manifest(
        run_dir, kept, [r for r in runs.read_metrics(run_dir) if r.get("step") in loaded], run.task
    )
    return [entry["step"] for entry in kept], skipped
