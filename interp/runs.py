"""Run folders on disk: layout, atomic writes, and `load_run` (written by `interp.run_writer`).

A run folder is self-describing:

    RUN_DIR/
      config.json                      effective RunConfig, written once
      split.safetensors                the exact index split the model was trained on
      checkpoints/step_000000100.safetensors   weights after 100 optimizer steps
      manifest.json                    the complete checkpoints, with sha256; written last
      metrics.jsonl                    one row per checkpoint
      trainer/state_000000100.*        optimizer, RNG and data-order state of the latest
                                       checkpoint, for exact resume (interp.trainer_state)
      analysis/                        `interp analyze` output
      .writer.lock                     flock held by the one process training the run

Every file is written to a temporary name, fsynced and renamed, so a reader sees either
the old file or the new one. The manifest is rewritten after its checkpoint is on disk,
so every checkpoint it lists is complete; anything else in `checkpoints/` is ignored.
Nothing is ever unpickled: weights are safetensors, everything else is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp.config import ConfigError, RunConfig
from interp.errors import RunError
from interp.tasks import TaskData, build_task

CONFIG_FILE = "config.json"
#: The copy of task.kb_file inside the run folder (plus the source's suffix, .jsonl or .csv).
KB_FILE = "kb"
SPLIT_FILE = "split.safetensors"
CHECKPOINT_DIR = "checkpoints"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.jsonl"
ANALYSIS_DIR = "analysis"
TRAINER_STATE_DIR = "trainer"
#: Ensemble members trained together (`interp.stacked`): their folder lists them here.
STACKED_FILE = "stacked.json"
SPLIT_PREFIX = "split."
#: Held (flock) by the one process that writes a run; the OS drops it when that process dies.
LOCK_FILE = ".writer.lock"


def checkpoint_name(step: int) -> str:
    return f"{CHECKPOINT_DIR}/step_{step:09d}.safetensors"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via temp file + fsync + rename (+ directory fsync), so readers never see a torn
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; run folders are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write() does not say which file it was
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def acquire_writer_lock(run_dir: Path) -> int:
    """Take the run's exclusive writer lock (non-blocking); returns the fd to release.

    Two trainers writing one folder (a second `--resume` while the first still runs) would
    interleave checkpoints and trainer states. An flock is released by the kernel when its
    process exits, even by SIGKILL, so a killed run never leaves a stale lock behind.
    """
    import fcntl

    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunError(
            f"{run_dir}: another process is writing this run (it holds {LOCK_FILE}); "
            "let it finish or stop it first"
        ) from None
    return fd


def release_writer_lock(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def remove_temp_files(run_dir: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed process left behind."""
    removed = []
    for folder in (run_dir, run_dir / CHECKPOINT_DIR, run_dir / TRAINER_STATE_DIR):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def save_tensors(
    path: Path, tensors: dict[str, Tensor], metadata: dict[str, str] | None = None
) -> str:
    """Atomically write safetensors; returns the sha256 of the bytes written."""
    from safetensors.torch import save

    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def load_tensors(path: Path, expected_sha256: str | None = None) -> dict[str, Tensor]:
    """Read safetensors, checking the hash when one is known; RunError names the file."""
    from safetensors.torch import load

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RunError(f"{path}: cannot read: {exc.strerror}") from None
    if expected_sha256 is not None and hashlib.sha256(data).hexdigest() != expected_sha256:
        raise RunError(
            f"{path}: contents do not match the manifest's sha256 (truncated or modified)"
        )
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise RunError(f"{path}: not a valid safetensors file ({exc})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None


def read_config(run_dir: Path) -> RunConfig:
    """The run's config; a relative `task.kb_file` names the copy inside the run folder."""
    data = read_json(run_dir / CONFIG_FILE)
    try:
        config = RunConfig.from_dict(data)
    except ConfigError as exc:
        raise RunError(f"{run_dir / CONFIG_FILE}: {exc}") from None
    kb_file = getattr(config.task, "kb_file", "")  # families with a data file (the entity ones)
    if kb_file and not Path(kb_file).is_absolute() and (run_dir / kb_file).is_file():
        config = replace(config, task=replace(config.task, kb_file=str(run_dir / kb_file)))
    return config


def read_manifest(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        return []
    data = read_json(path)
    entries = data.get("checkpoints") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise RunError(f"{path}: expected an object with a 'checkpoints' list")
    for number, entry in enumerate(entries):
        _check_manifest_entry(path, number, entry)
    return sorted(entries, key=lambda e: e["step"])


def _check_manifest_entry(path: Path, number: int, entry: Any) -> None:
    """A manifest entry must name a checkpoint file inside the run folder, by a relative path."""
    where = f"{path}: checkpoints[{number}]"
    if not isinstance(entry, dict):
        raise RunError(f"{where}: expected an object with step, file, sha256")
    step, file, digest = entry.get("step"), entry.get("file"), entry.get("sha256")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise RunError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
    if not isinstance(file, str) or not file.endswith(".safetensors"):
        raise RunError(f"{where}: 'file' must name a .safetensors file, got {file!r}")
    parts = Path(file).parts
    if Path(file).is_absolute() or ".." in parts or not parts or parts[0] != CHECKPOINT_DIR:
        raise RunError(f"{where}: 'file' must be a path under {CHECKPOINT_DIR}/, got {file!r}")
    if digest is not None and not isinstance(digest, str):
        raise RunError(f"{where}: 'sha256' must be a string, got {digest!r}")


def read_best(run_dir: Path) -> dict[str, Any] | None:
    """The manifest's `best` pointer ({step, criterion, value}), or None."""
    path = run_dir / MANIFEST_FILE
    if not path.exists():
        return None
    data = read_json(path)
    best = data.get("best") if isinstance(data, dict) else None
    return best if isinstance(best, dict) and isinstance(best.get("step"), int) else None


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            raise RunError(f"{path}:{number}: not valid JSON") from None
    return rows


def load_task(run_dir: Path, config: RunConfig) -> TaskData:
    """The run's dataset with the split it was trained on (read from disk, not regenerated)."""
    task = build_task(config.task)
    saved = load_tensors(run_dir / SPLIT_FILE)
    names = {k[len(SPLIT_PREFIX) :] for k in saved if k.startswith(SPLIT_PREFIX)}
    missing = set(task.splits) - names
    if names - set(task.splits) or missing & set(task.train_splits):
        raise RunError(
            f"{run_dir / SPLIT_FILE}: splits {sorted(names)} do not match the task's "
            f"{sorted(task.splits)}"
        )
    # A held-out split that the family added after the run was written (a fixed walk corpus's
    # `val`) is not the run's: the run is analyzed on the splits it has.
    task = replace(task, splits={k: v for k, v in task.splits.items() if k not in missing})
    # In the task's own order, not the file's: safetensors returns tensors in an order that
    # changes from one load to the next, and the first held-out split is what the entity
    # tasks' `test_acc` column measures (test-ID, `circuits.families.entity.measures`).
    splits = {name: saved[SPLIT_PREFIX + name].long() for name in task.splits}
    for name, index in splits.items():
        if index.numel() and (index.min() < 0 or index.max() >= task.n_examples):
            raise RunError(
                f"{run_dir / SPLIT_FILE}: split {name!r} indexes outside the {task.n_examples} "
                "examples"
            )
    return replace(task, splits=splits)


@dataclass(frozen=True)
class Skipped:
    """A checkpoint that could not be loaded: its step, its file and why."""

    step: int
    path: Path
    reason: str

    def __str__(self) -> str:
        return f"skipped step {self.step}: {self.reason}"


@dataclass
class Run:
    """A run folder, loaded lazily: `config`, `steps`, `metrics`, `task`, `model_at(step)`."""

    path: Path
    config: RunConfig
    manifest: list[dict[str, Any]]
    _task: TaskData | None = field(default=None, repr=False)

    @property
    def steps(self) -> list[int]:
        """Steps of the complete checkpoints listed in the manifest, ascending."""
        return [int(e["step"]) for e in self.manifest]

    @property
    def metrics(self) -> list[dict[str, Any]]:
        return read_metrics(self.path)

    @property
    def task(self) -> TaskData:
        if self._task is None:
            self._task = load_task(self.path, self.config)
        return self._task

    def checkpoint_path(self, step: int) -> Path:
        return self.path / self._entry(step)["file"]

    def _entry(self, step: int) -> dict[str, Any]:
        for entry in self.manifest:
            if int(entry["step"]) == step:
                return entry
        raise KeyError(
            f"{self.path}: no complete checkpoint at step {step}; have {self.steps[:5]}..."
        )

    def weights_at(self, step: int) -> dict[str, Tensor]:
        entry = self._entry(step)
        return load_tensors(self.path / entry["file"], entry.get("sha256"))

    def new_model(self, device: str | torch.device = "cpu"):
        """A model of this run's shape (random init); `load_weights_into` fills it."""
        from interp.model import build_model

        return build_model(
            self.config.model,
            d_vocab=self.config.task.d_vocab,
            d_vocab_out=self.config.task.d_vocab_out,
            n_ctx=self.config.task.n_ctx,
            device=device,
        )

    def load_weights_into(self, model, step: int) -> None:
        """Load a checkpoint; RunError (naming the file) if it is damaged, of the wrong shape,
        or holds NaN or infinite weights (intact file, valid hash: a run that diverged)."""
        from interp.model import load_state

        weights = self.weights_at(step)
        bad = sorted(
            name
            for name, tensor in weights.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        )
        if bad:
            raise RunError(
                f"{self.checkpoint_path(step)}: weights hold NaN or inf ({', '.join(bad[:3])}"
                f"{', …' if len(bad) > 3 else ''}); the file is intact but the model diverged"
            )
        try:
            load_state(model, weights)
        except ValueError as exc:
            raise RunError(f"{self.checkpoint_path(step)}: {exc}") from None

    def model_at(self, step: int, device: str | torch.device = "cpu"):
        """The hooked transformer (TransformerBridge) with the weights saved at `step`."""
        model = self.new_model(device)
        self.load_weights_into(model, step)
        model.eval()
        return model

    def iter_models(
        self,
        steps: list[int] | None = None,
        *,
        on_error: Callable[[Skipped], None] | None = None,
        model: Any | None = None,
    ) -> Iterator[tuple[int, Any]]:
        """(step, model) for each checkpoint, reusing one model object: O(1) memory in the run
        length.

        `model` (from `new_model`) is the object to reuse; by default a new one is built.

        A checkpoint that is missing, truncated, corrupt (sha256 mismatch, bad safetensors)
        or of the wrong shape raises RunError naming its file; with `on_error`, it is
        reported as a `Skipped` and the iteration goes on with the next step. Callers
        that must tell the user (e.g. `interp analyze`'s exit code) collect the Skipped.
        """
        model = self.new_model() if model is None else model
        model.eval()
        for step in self.steps if steps is None else steps:
            try:
                self.load_weights_into(model, step)
            except (RunError, KeyError) as exc:
                if on_error is None:
                    raise
                path = self.path / self._entry(step)["file"] if step in self.steps else self.path
                on_error(Skipped(step=step, path=path, reason=str(exc).strip("'\"")))
                continue
            yield step, model


def no_checkpoints_message(run_dir: Path) -> str:
    """Why a run has nothing to analyze or resume, and what to do about a lost manifest."""
    files = sorted((run_dir / CHECKPOINT_DIR).glob("step_*.safetensors"))
    if not (run_dir / MANIFEST_FILE).exists() and files:
        return (
            f"{run_dir / MANIFEST_FILE} is missing, but {len(files)} checkpoint files are in "
            f"{run_dir / CHECKPOINT_DIR}; `interp relist {run_dir}` verifies that each one loads "
            "and writes a new manifest of those that do"
        )
    return f"{run_dir}: no complete checkpoints (the manifest lists none)"


def load_run(path: str | Path) -> Run:
    """Open a run folder written by `interp train` (or `interp import`)."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    config = read_config(run_dir)
    return Run(path=run_dir, config=config, manifest=read_manifest(run_dir))
