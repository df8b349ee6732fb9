"""Ensemble members trained together: K seeds of one config in one process, their weights
stacked on a leading member axis, each member writing an ordinary run folder.

    interp train graph-walk --out runs/ens --seeds 0,1,2,3   # runs/ens/seed=0 … seed=3
    interp train --resume --out runs/ens                     # all members, from where each is

Member s is the config with `model.seed = train.seed = s` (the sweep's seed fields): its own
initial weights and data order (a fixed corpus's batch order, or its own fresh walks).
`OUT/stacked.json` lists the members; each `OUT/seed=S` is an ordinary run folder
(`interp analyze`, `interp ensemble OUT/seed=*`, `interp train --resume` of one alone).

Each member is an `interp.training.Trainer` (folder, sampler, loss, evaluators, checkpoints,
early stop, retention). Between checkpoints their parameters live in a `MemberStack`: a step
draws each member's own batch, runs the family's batched forward (`Family.stacked_forward`;
graph walks: `interp.model.stacked_sequence_logits`), backpropagates the *sum* of the
members' losses (member i's gradient is its own), clips each member's gradient on its own
and steps one AdamW over the stacked tensors (elementwise: K independent ones). At a
checkpoint the stack is written back into the members (weights, AdamW moments, schedule,
filter state), which measure and save themselves as a separate run would.

On CPU, graph-walk members are bit-identical to their separate runs: every checkpoint's
weights and every metric but `time_s` (tests/interp/test_stacked.py). Families without a
batched forward run theirs under `torch.func.vmap`, equal to float rounding, as is ⊥Grad
(per-member sums reduced in another order). Speed: docs/benchmarks.md.

Resume: members killed at different steps are brought level first (the lagging ones as a
smaller stack); a member that stops early or whose loss is not finite leaves the stack and
the others go on. `train.weight_norm_floor` and `train.lr_decay_at_val_acc` are refused.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from interp import init_from, provenance, run_writer, runs
from interp.config import RunConfig
from interp.console import progress_bar
from interp.errors import RunExists, TrainingError
from interp.model import build_model
from interp.optimizer import (
    clip_grad_norm_per_member_,
    make_filter,
    make_optimizer,
    member_filter_state,
    orthogonalize_grads_,
    stack_filter_states,
)
from interp.registry import family_of
from interp.schedule import TrainResult, val_acc_streak
from interp.training import Trainer

FORMAT_VERSION = 1


def member_name(seed: int) -> str:
    """A member's folder name inside the stacked run's folder."""
    return f"seed={seed}"


def member_config(config: RunConfig, seed: int) -> RunConfig:
    """Member `seed` of `config`: its own initial weights and its own data order."""
    return replace(
        config, model=replace(config.model, seed=seed), train=replace(config.train, seed=seed)
    )


@dataclass(frozen=True)
class StackedResult:
    """Each member's outcome: its `TrainResult`, or why it failed (a NaN loss)."""

    out: Path
    results: dict[str, TrainResult] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


class MemberStack:
    """Members at one step with their parameters stacked [member, ...], one optimizer over
    them; built from the members' own state and written back into it (`write_back`)."""

    def __init__(self, members: list[Trainer], arch):
        first = self.first = members[0]
        self.members, self.arch, self.step = list(members), arch, first.step
        self.family = family_of(first.config)
        train = first.config.train
        with torch.no_grad():
            self.params = {
                name: nn.Parameter(torch.stack([m.params[name].detach() for m in members]))
                for name in first.params
            }
        self.optimizer, self.scheduler = make_optimizer(
            self.params.values(), train, fused=self.family.fused_optimizer
        )
        states = [m.optimizer.state_dict() for m in members]
        self.optimizer.load_state_dict(
            _optimizer_state(
                states[0], lambda index, key: torch.stack([s["state"][index][key] for s in states])
            )
        )
        self.scheduler.load_state_dict(first.scheduler.state_dict())
        self.grad_filter = make_filter(
            train.grad_filter,
            alpha=train.grokfast_alpha,
            lamb=train.grokfast_lamb,
            window=train.grokfast_window,
        )
        if self.grad_filter is not None:
            self.grad_filter.load_state_dict(
                stack_filter_states([m.grad_filter.state_dict() for m in members])
            )

    def draw(self) -> list[tuple[Tensor, Tensor]]:
        """Each member's next batch from its own sampler (drawn together where the sampler
        class can: `BatchSampler.next_batches`)."""
        samplers = [m.sampler for m in self.members]
        if len({type(s) for s in samplers}) == 1:
            return type(samplers[0]).next_batches(samplers)
        return [s.next_batch() for s in samplers]

    def train_step(self, batches: list[tuple[Tensor, Tensor]]) -> list[int]:
        """One step of every member on its batch; returns the indices of members whose loss
        is not finite, in which case nothing is updated."""
        tokens = torch.stack([tokens for tokens, _ in batches])
        logits = self.family.stacked_forward(self.arch, self.params, tokens)
        losses = torch.stack(
            [
                m.loss_fn(member_logits, labels.reshape(-1))
                for m, member_logits, (_, labels) in zip(self.members, logits.unbind(0), batches)
            ]
        )
        failed = [i for i, value in enumerate(losses.tolist()) if not math.isfinite(value)]
        if failed:
            return failed
        train = self.first.config.train
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # d(sum)/d(loss_i) = 1: member i's gradient is its own
        if train.orthogonal_grad:
            orthogonalize_grads_(self.params, seed_dims=1)
        if self.grad_filter is not None:
            self.grad_filter.apply(self.params)
        if train.grad_clip > 0:
            clip_grad_norm_per_member_(self.params, train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return []

    @torch.no_grad()
    def write_back(self) -> None:
        """Each member's weights, AdamW state, schedule, filter state and step from the stack:
        what its separate run would hold at this step."""
        state = self.optimizer.state_dict()
        schedule = self.scheduler.state_dict()
        filtered = self.grad_filter.state_dict() if self.grad_filter is not None else {}
        for i, member in enumerate(self.members):
            for name, param in member.params.items():
                param.copy_(self.params[name][i])
            member.optimizer.load_state_dict(
                _optimizer_state(state, lambda index, key: state["state"][index][key][i].clone())
            )
            member.scheduler.load_state_dict(schedule)
            if member.grad_filter is not None:
                member.grad_filter.load_state_dict(member_filter_state(filtered, i))
            member.step = self.step


def _optimizer_state(like: dict[str, Any], tensor) -> dict[str, Any]:
    """An AdamW state dict shaped as `like`, with each moment `tensor(param_index, key)` (the
    stacked or one member's) and the shared step count copied."""
    return {
        "state": {
            index: {
                key: value.clone() if key == "step" else tensor(index, key)
                for key, value in per_param.items()
            }
            for index, per_param in like["state"].items()
        },
        "param_groups": like["param_groups"],
    }


def check_stackable(config: RunConfig) -> None:
    """Refuse, naming the field, what would couple the members or part their schedules."""
    train = config.train
    for name, value, why in (
        ("weight_norm_floor", train.weight_norm_floor, "rescales each member's joint norm"),
        ("lr_decay_at_val_acc", train.lr_decay_at_val_acc, "would part the members' lr"),
    ):
        if value:
            raise TrainingError(
                f"train.{name}: not supported for members trained together ({why}); "
                "train them one by one"
            )


def train_members(
    config: RunConfig,
    out: str | Path,
    seeds: list[int],
    *,
    overwrite: bool = False,
    progress: bool = True,
    tracker_for: Callable[[Path], Any] | None = None,
) -> StackedResult:
    """Train member `s` of `config` for each seed into `out/seed=S`, all together (module
    docstring). `tracker_for(run_dir)` gives each member's tracker (`interp.tracking`)."""
    out = Path(out)
    if not seeds or len(set(seeds)) != len(seeds):
        raise TrainingError(f"seeds: expected distinct seeds, got {seeds}")
    check_stackable(config)
    members = [
        Trainer(
            member_config(config, seed),
            out / member_name(seed),
            progress=False,
            tracker=tracker_for(out / member_name(seed)) if tracker_for else None,
        )
        for seed in seeds
    ]  # built first: a config that cannot train fails before any writing
    _prepare(out, overwrite)
    try:
        for member in members:
            run_writer.prepare_run_dir(member.run_dir, overwrite=overwrite)
        runs.atomic_write_json(
            out / runs.STACKED_FILE,
            {"format": FORMAT_VERSION, "members": [member_name(s) for s in seeds], "seeds": seeds},
        )
    except OSError as exc:
        raise TrainingError(f"{out}: cannot prepare the members' folders: {exc}", argument="out")
    return run_members(members, out, progress=progress)


def _prepare(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TrainingError(f"{out}: exists and is not a folder", argument="out")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / runs.STACKED_FILE).is_file():
        raise TrainingError(
            f"{out}: folder is not empty and holds no members trained together "
            f"({runs.STACKED_FILE})",
            argument="out",
        )
    if not overwrite:
        raise RunExists(out)
    for name in member_names(out):  # the old members go, whichever seeds they had
        run_writer.prepare_run_dir(out / name, overwrite=True)
        (out / name).rmdir()


def member_names(out: Path) -> list[str]:
    """The member folders `out/stacked.json` lists."""
    info = runs.read_json(out / runs.STACKED_FILE)
    if not isinstance(info, dict) or info.get("format") != FORMAT_VERSION:
        raise runs.RunError(f"{out / runs.STACKED_FILE}: not a list of members (format 1)")
    return [str(name) for name in info["members"]]


def resume_members(
    out: str | Path,
    *,
    progress: bool = True,
    tracker_for: Callable[[Path], Any] | None = None,
) -> StackedResult:
    """Continue every member in `out` from its last complete checkpoint, together."""
    out = Path(out)
    try:
        names = member_names(out)
    except runs.RunError as exc:
        raise TrainingError(f"resume=True: {exc}") from None
    members: list[Trainer] = []
    try:
        for name in names:
            tracker = tracker_for(out / name) if tracker_for else None
            members.append(Trainer.from_run_dir(out / name, progress=False, tracker=tracker))
        neutral = member_config(members[0].config, 0)
        if any(member_config(m.config, 0) != neutral for m in members):
            raise TrainingError(f"resume=True: {out}: the members' configs differ beyond seeds")
        check_stackable(members[0].config)
    except BaseException:
        for member in members:  # release the locks taken so far
            with member.writing():
                pass
        raise
    return run_members(members, out, progress=progress)


def run_members(members: list[Trainer], out: Path, *, progress: bool = True) -> StackedResult:
    """Train the members (fresh or restored, each at its own step) to the end of their
    schedules, holding every member's writer lock throughout."""
    result = StackedResult(out)
    with contextlib.ExitStack() as held:
        for member in members:
            held.enter_context(member.writing())
        active = [m for m in members if not _finished_at_start(m, result)]
        if not active:
            return result
        first = active[0]
        task = first.config.task
        arch = build_model(  # the architecture the stacked weights run through
            first.config.model,
            d_vocab=task.d_vocab,
            d_vocab_out=task.d_vocab_out,
            n_ctx=task.n_ctx,
            device=first.device,
        )
        names = [m.run_dir.name for m in members]
        for member in active:
            session = provenance.collect(member.config, member.device, member.step)
            session["stacked_with"] = {"folder": str(out), "members": names}
            provenance.record(member.run_dir, session)
        bar = progress_bar(
            total=first.config.train.steps,
            initial=min(m.step for m in active),
            enabled=progress,
        )
        stack: MemberStack | None = None
        try:
            while active:
                step = min(m.step for m in active)
                group = [m for m in active if m.step == step]
                target = next(s for s in group[0].schedule if s > step)
                if stack is None or stack.members != group:
                    stack = MemberStack(group, arch)
                while group and stack.step < target:
                    batches = stack.draw()
                    failed = stack.train_step(batches)
                    if failed:  # those members stop here; the others redo the step
                        stack.write_back()
                        for i in failed:
                            _fail(group[i], result)
                        kept = [i for i in range(len(group)) if i not in failed]
                        group = [group[i] for i in kept]
                        active = [m for m in active if m.run_dir.name not in result.failures]
                        if group:
                            stack = MemberStack(group, arch)
                            stack.train_step([batches[i] for i in kept])  # were finite
                    bar.update(1)
                if not group:
                    continue
                stack.write_back()
                for member in group:
                    row = member.checkpoint()
                    reason = _stop_reason(member, row)
                    if reason or member.step >= member.config.train.steps:
                        result.results[member.run_dir.name] = member.finish(row, reason)
                        active.remove(member)
        finally:
            bar.close()
    return result


def _finished_at_start(member: Trainer, result: StackedResult) -> bool:
    """A fresh member's start (its first checkpoint), or a restored member that had already
    ended (its schedule, an early stop): then its result is recorded."""
    train = member.config.train
    if member.step == 0:
        init_from.start(member)
        member.write_header()
        member.checkpoint()
        return False
    last_row = member.metrics[-1] if member.metrics else {}
    reason = None
    if val_acc_streak(member.metrics, train.stop_at_val_acc) >= train.stop_patience:
        reason = "val_acc"
    elif train.stop_on_collapse and member.collapses():
        reason = "collapse"
    if reason or member.step >= train.steps:
        result.results[member.run_dir.name] = member.finish(last_row, reason)
        return True
    return False


def _stop_reason(member: Trainer, row: dict[str, Any]) -> str | None:
    """As `Trainer.run` decides after each checkpoint."""
    train = member.config.train
    if train.stop_on_collapse and row.get("events"):
        return "collapse"
    if val_acc_streak(member.metrics, train.stop_at_val_acc) >= train.stop_patience:
        return "val_acc"
    return None


def _fail(member: Trainer, result: StackedResult) -> None:
    last = member.manifest[-1]["step"] if member.manifest else None
    result.failures[member.run_dir.name] = (
        f"training loss became non-finite at step {member.step + 1}; stopped. The last good "
        f"checkpoint is step {last} in {member.run_dir}"
    )
