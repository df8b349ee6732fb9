"""Ensemble members trained together (`interp.stacked`) against the same members trained one
after another, side by side in one run, on the same threads.

    python -m experiments.benchmarks.ensemble_bench [--members 4 8] [--rounds 7] [--block 8]
        [--threads 1] [--data fixed] [--end-to-end 256] [--set task.context=8]

The members are the fixed-data study's (experiments/sweeps/fixed_data/ensemble_d32.toml: the
`graph-walk` preset on a fixed corpus of 4,096 walks, d_model 32, batch 32 walks x context 50,
lr 0.1, no weight decay, cosine schedule, gradient clipping 1.0, fused AdamW), seeds 0..K-1.

Training throughput: blocks of `--block` steps alternate between the stack (one
`MemberStack.train_step` for all K members per step, each drawing its own batch) and the
separate members (`Trainer.train_step` of member 0, then member 1, ...), each side with its own
freshly built members, so background load hits both alike. Tokens per second by wall clock
and by this process's CPU time (steadier on a shared machine: it does not count the time other
jobs hold the core), medians over the rounds, and the ratio per round.

Equality: both sides have then taken the same steps from the same initial weights on the same
batches; the largest weight difference between the stack's member i and the separate member
i (0: bit-identical).

`--end-to-end STEPS` also times whole runs of STEPS steps with their checkpoints (evaluation and
files; a checkpoint every STEPS/4): `interp.stacked.train_members` against `interp.training.train`
for each member in turn, wall clock, in alternating order over `--end-to-end-rounds`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from experiments.benchmarks.table import median, row

#: experiments/sweeps/fixed_data/ensemble_d32.toml's settings (the study's ensemble members).
STUDY = [
    "task.data=fixed",
    "task.corpus_walks=4096",
    "model.d_model=32",
    "model.d_head=16",
    "model.d_mlp=128",
    "train.lr_schedule=cosine",
    "train.lr=0.1",
    "train.weight_decay=0.0",
    "train.steps=2048",
    "train.warmup_steps=205",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", choices=["fixed", "fresh"], default="fixed")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="STEPS")
    parser.add_argument("--end-to-end-rounds", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], help="e.g. task.context=8")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from interp.memory import keep_freed_memory
    from interp.presets import resolve_config

    keep_freed_memory()  # the stack's K-times larger temporaries stay in the heap
    config = resolve_config("graph-walk", [*STUDY, f"task.data={args.data}", *args.set])
    row("ensemble", "torch threads", str(torch.get_num_threads()))
    shape = f"{args.data} walks, batch 32 x context {config.task.context} per member"
    row("ensemble", "data", shape, " ".join(args.set))
    for n_members in args.members:
        throughput(config, n_members, args.rounds, args.block)
    if args.end_to_end:
        end_to_end(config, max(args.members[0], 1), args.end_to_end, args.end_to_end_rounds)
    return 0


def throughput(config, n_members: int, rounds: int, block: int) -> None:
    from interp.model import build_model
    from interp.stacked import MemberStack, member_config
    from interp.training import Trainer

    unused = Path(tempfile.gettempdir()) / "interp_ensemble_bench_unused"

    def members() -> list:
        return [
            Trainer(member_config(config, seed), unused / str(seed), progress=False)
            for seed in range(n_members)
        ]

    separate, stacked = members(), members()
    task = config.task
    arch = build_model(
        config.model, d_vocab=task.d_vocab, d_vocab_out=task.d_vocab_out, n_ctx=task.n_ctx
    )
    stack = MemberStack(stacked, arch)

    def stacked_block() -> None:
        for _ in range(block):
            stack.train_step(stack.draw())

    def separate_block() -> None:
        for member in separate:
            for _ in range(block):
                member.train_step()

    tokens = n_members * block * stacked[0].tokens_per_step
    sides = {"stacked": stacked_block, "one after another": separate_block}
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    for name, run in sides.items():  # warm-up: one block each (counted in the equality check)
        run()
    for _ in range(rounds):
        for name, run in sides.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(tokens / (time.perf_counter() - start_wall))
            cpu[name].append(tokens / (time.process_time() - start_cpu))
    stack.write_back()
    worst = max(
        (a.params[name] - b.params[name]).abs().max().item()
        for a, b in zip(stacked, separate)
        for name in a.params
    )
    label = f"K = {n_members}"
    for clock, rates in (("wall", wall), ("CPU", cpu)):
        together, apart = median(rates["stacked"]), median(rates["one after another"])
        row("ensemble", f"{label}: stacked ({clock} clock)", f"{together:,.0f} tok/s")
        row("ensemble", f"{label}: one after another ({clock} clock)", f"{apart:,.0f} tok/s")
        per_round = ", ".join(
            f"{a / b:.2f}" for a, b in zip(rates["stacked"], rates["one after another"])
        )
        row("ensemble", f"{label}: ratio ({clock} clock)", f"{together / apart:.2f}x", per_round)
    steps = (rounds + 1) * block
    row("ensemble", f"{label}: max |weight difference| after {steps} steps", f"{worst:.3g}")


def end_to_end(config, n_members: int, steps: int, rounds: int) -> None:
    from interp.stacked import member_config, train_members
    from interp.training import train

    short = config.with_overrides(
        [
            f"train.steps={steps}",
            f"train.warmup_steps={steps // 10}",
            f"train.ckpt_every={max(1, steps // 4)}",
            "train.ckpt_log_until=0",
            "train.keep_checkpoints=final",
        ]
    )
    seeds = list(range(n_members))
    times: dict[str, list[float]] = {"stacked": [], "one after another": []}
    root = Path(tempfile.mkdtemp(prefix="interp_ensemble_bench_"))
    try:
        for index in range(rounds):
            order = ["stacked", "one after another"]
            for side in order if index % 2 == 0 else order[::-1]:
                out = root / f"{side.replace(' ', '_')}_{index}"
                start = time.perf_counter()
                if side == "stacked":
                    train_members(short, out, seeds, progress=False)
                else:
                    for seed in seeds:
                        train(member_config(short, seed), out / str(seed), progress=False)
                times[side].append(time.perf_counter() - start)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    label = f"end to end, K = {n_members}, {steps} steps, checkpoints included"
    together, apart = median(times["stacked"]), median(times["one after another"])
    row("ensemble", f"{label}: stacked", f"{together:.1f} s")
    row("ensemble", f"{label}: one after another", f"{apart:.1f} s")
    row("ensemble", f"{label}: ratio", f"{apart / together:.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
