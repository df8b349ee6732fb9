"""The training loop: AdamW with warmup (then constant or cosine), optional Grokfast filter,
checkpoints on a schedule. `evaluators` are called at every checkpoint with (model, task,
logits by split) and return extra metric columns; by default the task family's progress
measures (`interp.registry.Family.evaluators`), found through the registry, so `interp`
never imports `circuits` itself. Every metrics row counts `tokens_seen` (targets trained on).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from interp import init_from, provenance, retention, run_writer, runs, trainer_state
from interp.collapse import CollapseEvent, detect_collapses
from interp.config import RunConfig
from interp.console import postfix, progress_bar, warn
from interp.errors import TrainingError
from interp.metrics import evaluate, sum_squared_weights
from interp.model import build_model, parameters, state_dict, tl_named_parameters
from interp.optimizer import (
    make_filter,
    make_optimizer,
    orthogonalize_grads_,
    raise_norm_to_floor_,
    total_norm,
)
from interp.registry import family_of
from interp.schedule import TrainResult, checkpoint_schedule, resolve_device, val_acc_streak
from interp.tasks import TaskData, build_task
from interp.tracking import Tracker

#: (model, task, {split: (logits, labels)}) -> extra metric columns
Evaluator = Callable[[Any, TaskData, dict[str, tuple[Tensor, Tensor]]], dict[str, float]]


class Trainer:
    """One run: owns the model, optimizer, filter and data order; `run()` trains to the end."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        *,
        evaluators: Sequence[Evaluator] | None = None,
        progress: bool = True,
        tracker: Tracker | None = None,
    ):
        self.config = config
        self.run_dir = Path(run_dir)
        family = family_of(config)
        self.evaluators = list(family.evaluators(config) if evaluators is None else evaluators)
        self.progress = progress
        #: Live tracking (`interp.tracking`): gets each metrics row once it is on disk.
        self.tracker = tracker
        self.device = resolve_device(config.train.device)
        self.task = build_task(config.task)
        self.model = build_model(
            config.model,
            d_vocab=config.task.d_vocab,
            d_vocab_out=config.task.d_vocab_out,
            n_ctx=config.task.n_ctx,
            device=self.device,
        )
        self.params = parameters(self.model)
        train = config.train
        # The floor is relative to the initial weights, which the model seed fixes: a resumed
        # run rebuilds the same initial model here before loading its checkpoint.
        self.norm_floor = (
            train.weight_norm_floor * total_norm(self.params) if train.weight_norm_floor else 0.0
        )
        #: The floor binds once the norm has reached it, so a floor above the initial norm
        #: (factor > 1) does not rescale the initial weights; saved with the trainer state.
        self.norm_floor_armed = 0 < train.weight_norm_floor <= 1
        self.optimizer, self.scheduler = make_optimizer(
            self.params.values(), train, fused=family.fused_optimizer
        )
        self.grad_filter = make_filter(
            train.grad_filter,
            alpha=train.grokfast_alpha,
            lamb=train.grokfast_lamb,
            window=train.grokfast_window,
        )
        #: The family's forward to the logits its loss reads (the answer position by default).
        self.forward = family.forward
        self.loss_fn = family.training_loss(train.loss)  # float64 unless the family says
        #: Where batches come from; its state is saved with the trainer state.
        self.sampler = family.sampler(self.task, train, self.device)
        if train.lr_decay_at_val_acc > 0 and "val" not in self.task.splits:
            raise TrainingError(
                "train.lr_decay_at_val_acc: the lr decay reads a validation split and this task "
                "has none; set task.val_frac > 0 (modular tasks) or train.lr_decay_at_val_acc=0"
            )
        if train.stop_at_val_acc > 0 and "val" not in self.task.splits:
            raise TrainingError(
                "train.stop_at_val_acc: early stopping selects on a validation split and this task "
                "has none; set task.val_frac > 0 (modular tasks) or train.stop_at_val_acc=0 (for a "
                "run folder written by an earlier version, whose stop_at_test_acc became "
                "stop_at_val_acc, edit its config.json)"
            )
        self.collapse_rule = family.collapse_rule(self.task)
        batch = train.batch_size or len(self.task.train_index)  # targets per step: tokens_seen
        self.tokens_per_step = batch * int(self.task.labels[0].numel())
        self.schedule = checkpoint_schedule(train.steps, train.ckpt_every, train.ckpt_log_until)
        self.step = 0
        self.manifest: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self._start_time = time.perf_counter()
        #: Wall time spent before this process (a resumed run continues its clock).
        self.time_offset = 0.0
        #: the run folder's writer lock while this trainer writes it (`interp.runs`)
        self.lock_fd_held: int | None = None

    def elapsed_s(self) -> float:
        return self.time_offset + time.perf_counter() - self._start_time

    # -- one optimizer step -----------------------------------------------------------------
    def train_step(self) -> float:
        tokens, labels = self.sampler.next_batch()
        logits, labels = self.forward(self.model, tokens), labels.reshape(-1)
        loss = self.loss_fn(logits, labels)
        value = loss.item()
        if not math.isfinite(value):
            last = self.manifest[-1]["step"] if self.manifest else None
            raise TrainingError(
                f"training loss became {value} at step {self.step + 1}; stopped. "
                f"The last good checkpoint is step {last} in {self.run_dir}"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.train.orthogonal_grad:
            orthogonalize_grads_(self.params)
        if self.grad_filter is not None:
            self.grad_filter.apply(self.params)
        if self.config.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.params.values(), self.config.train.grad_clip)
        self.optimizer.step()
        if self.norm_floor:
            if self.norm_floor_armed:
                raise_norm_to_floor_(self.params, self.norm_floor)
            else:
                self.norm_floor_armed = total_norm(self.params) >= self.norm_floor
        self.scheduler.step()
        self.step += 1
        return value

    def maybe_decay_lr(self, row: dict[str, Any]) -> None:
        """`train.lr_decay_at_val_acc`: multiply the lr by `lr_decay_factor` at the first
        checkpoint whose validation accuracy reaches it. The decayed base lr lives in the
        scheduler's state, which each checkpoint saves, so a resumed run keeps it."""
        train = self.config.train
        if train.lr_decay_at_val_acc <= 0 or row.get("val_acc", 0) < train.lr_decay_at_val_acc:
            return
        if self.scheduler.base_lrs[0] != train.lr:  # decayed already
            return
        factor = train.lr_decay_factor
        self.scheduler.base_lrs = [lr * factor for lr in self.scheduler.base_lrs]
        for group in self.optimizer.param_groups:
            group["lr"] *= factor

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Measure, then write weights, metrics and (last) the manifest, each atomically."""
        self.model.eval()
        row: dict[str, Any] = {"step": self.step}
        measured, by_split = evaluate(self.model, self.task, self.device, self.forward)
        row.update(measured)
        row.update(sum_squared_weights(tl_named_parameters(self.model)))
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["tokens_seen"] = self.step * self.tokens_per_step
        with torch.inference_mode():
            for evaluator in self.evaluators:
                row.update(evaluator(self.model, self.task, by_split))
        row["time_s"] = round(self.elapsed_s(), 3)
        self.model.train()
        fired = [
            e
            for e in detect_collapses([*self.metrics, row], self.collapse_rule)
            if e.step == self.step
        ]
        if fired:
            row["events"] = [e.to_dict() for e in fired]
            for event in fired:
                warn(f"warning: {event.describe()} ({self.run_dir})")

        try:
            self._write_checkpoint(row)
        except OSError as exc:
            last = self.manifest[-1]["step"] if self.manifest else None
            raise TrainingError(
                f"cannot write the checkpoint for step {self.step}: {exc}. "
                f"The manifest still lists step {last} as the last complete checkpoint in "
                f"{self.run_dir}; "
                "free space and continue it with resume=True"
            ) from None
        if self.tracker is not None:
            self.tracker.log_row(row)
        return row

    def _write_checkpoint(self, row: dict[str, Any]) -> None:
        # Order matters for kill safety: weights and trainer state first, the manifest
        # (which makes the checkpoint count) last, old trainer state deleted only after.
        entry = run_writer.write_weights(self.run_dir, self.step, state_dict(self.model))
        trainer_state.save(self.run_dir, trainer_state.capture(self))
        metrics = [r for r in self.metrics if r["step"] != self.step] + [row]
        run_writer.write_metrics(self.run_dir, metrics)
        manifest = [e for e in self.manifest if e["step"] != self.step] + [entry]
        run_writer.write_manifest(self.run_dir, manifest, metrics, self.task)
        self.metrics, self.manifest = metrics, manifest
        trainer_state.remove_all_but(self.run_dir, self.step)

    def write_header(self) -> None:
        try:
            run_writer.write_header(self.run_dir, self.config, self.task)
        except OSError as exc:
            raise TrainingError(
                f"{self.run_dir}: cannot write the run's config and split: {exc}", argument="out"
            ) from None

    def collapses(self) -> tuple[CollapseEvent, ...]:
        return tuple(detect_collapses(self.metrics, self.collapse_rule))

    @classmethod
    def from_run_dir(
        cls,
        run_dir: str | Path,
        *,
        evaluators: Sequence[Evaluator] | None = None,
        progress: bool = True,
        tracker: Tracker | None = None,
    ) -> Trainer:
        """A Trainer positioned exactly at the run's last complete checkpoint, holding the
        run's writer lock until its `run()` returns (`interp.resume.restored_trainer`)."""
        from interp.resume import restored_trainer

        return restored_trainer(
            cls, Path(run_dir), evaluators=evaluators, progress=progress, tracker=tracker
        )

    def run(self) -> TrainResult:
        """Train to the end of the schedule, holding the run's writer lock (`writing`)."""
        with self.writing():
            return self._run()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the writer lock in the block (unless `from_run_dir` took it), then close the
        tracker, if any: `run`, and each member of `interp.stacked`."""
        if self.lock_fd_held is None:
            try:
                self.lock_fd_held = runs.acquire_writer_lock(self.run_dir)
            except runs.RunError as exc:
                raise TrainingError(str(exc), argument="out") from None
        try:
            yield
        finally:
            runs.release_writer_lock(self.lock_fd_held)
            self.lock_fd_held = None
            if self.tracker is not None:
                self.tracker.close()

    def _run(self) -> TrainResult:
        train = self.config.train
        checkpoints = [s for s in self.schedule if s > self.step]
        if self.step == 0:
            init_from.start(self)
            self.write_header()
            last_row = self.checkpoint()
            checkpoints = [s for s in checkpoints if s > 0]
        else:
            last_row = self.metrics[-1] if self.metrics else {}
            if last_row.get("step", 0) > 0:
                # As the uninterrupted run did right after writing this checkpoint.
                self.maybe_decay_lr(last_row)
        test_acc_key = (
            f"{self.task.held_out_splits[0]}_acc"  # shown in the bar, never selects anything
        )
        # A resumed run that had already stopped early stays stopped.
        if val_acc_streak(self.metrics, train.stop_at_val_acc) >= train.stop_patience:
            return self.finish(last_row, "val_acc")
        if train.stop_on_collapse and self.collapses():
            return self.finish(last_row, "collapse")
        try:
            provenance.record(self.run_dir, provenance.collect(self.config, self.device, self.step))
        except OSError as exc:
            raise TrainingError(
                f"{self.run_dir}: cannot write {provenance.PROVENANCE_FILE}: {exc}", argument="out"
            ) from None
        bar = progress_bar(total=train.steps, initial=self.step, enabled=self.progress)
        self.model.train()
        stop_reason = None
        try:
            for target in checkpoints:
                while self.step < target:
                    self.train_step()
                    bar.update(1)
                last_row = self.checkpoint()
                self.maybe_decay_lr(last_row)
                bar.set_postfix(
                    postfix(last_row, f"{self.task.train_splits[-1]}_loss", test_acc_key),
                    refresh=False,
                )
                if train.stop_on_collapse and last_row.get("events"):
                    stop_reason = "collapse"
                    break
                if val_acc_streak(self.metrics, train.stop_at_val_acc) >= train.stop_patience:
                    stop_reason = "val_acc"
                    break
        finally:
            bar.close()
        return self.finish(last_row, stop_reason)

    def finish(self, last_row: dict[str, Any], stop_reason: str | None) -> TrainResult:
        """The run has ended (its schedule, or an early stop): apply the retention policy."""
        if self.config.train.keep_checkpoints != "all":
            try:
                retention.prune(self.run_dir, self.config.train.keep_checkpoints)
            except (OSError, runs.RunError) as exc:
                warn(f"warning: {self.run_dir}: checkpoints not pruned: {exc}")
        sizes = {f"{name}_acc": len(index) for name, index in self.task.splits.items()}
        stopped = stop_reason is not None
        return TrainResult(
            self.run_dir, self.step, last_row, stopped, self.collapses(), stop_reason, sizes
        )


def resume(
    run_dir: str | Path,
    *,
    evaluators: Sequence[Evaluator] | None = None,
    progress: bool = True,
    tracker: Tracker | None = None,
) -> TrainResult:
    """Continue a run from its last complete checkpoint to the end of its schedule.

    Weights, optimizer moments, the learning-rate schedule, RNG and data-order state and
    the Grokfast filter are restored from disk, so on CPU the result is bit-identical to
    an uninterrupted run. Metric rows after that checkpoint are dropped and recomputed.
    `evaluators` default to the task family's progress measures for the run's own config.
    """
    return Trainer.from_run_dir(
        run_dir, evaluators=evaluators, progress=progress, tracker=tracker
    ).run()


def train(
    config: RunConfig,
    run_dir: str | Path,
    *,
    evaluators: Sequence[Evaluator] | None = None,
    progress: bool = True,
    overwrite: bool = False,
    tracker: Tracker | None = None,
) -> TrainResult:
    """Train a fresh run into `run_dir` (must be empty, or a run with `overwrite=True`);
    `tracker` (`interp.tracking`) gets every metrics row as it is written."""
    run_dir = Path(run_dir)
    # Build first (task, model, device): a config that cannot train fails before any writing.
    trainer = Trainer(config, run_dir, evaluators=evaluators, progress=progress, tracker=tracker)
    try:
        run_writer.prepare_run_dir(run_dir, overwrite=overwrite)
    except OSError as exc:
        raise TrainingError(
            f"{run_dir}: cannot prepare the run folder: {exc}", argument="out"
        ) from None
    return trainer.run()
