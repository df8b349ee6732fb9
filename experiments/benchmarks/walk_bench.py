"""Random-walk training throughput: the project's trainer against a plain PyTorch causal GPT
of the same shape with the same optimizer, measured side by side in one run; and the walk
sampler against what the trainer consumes.

    python -m experiments.benchmarks.walk_bench [--rounds 7] [--block 20] [--threads 2]

Both sides train the `graph-walk` preset's model (ER n = 128, m = 640, context 50, batch 32,
2 layers, d_model 32) on fresh walks from the same sampler class: the project through
`interp.training.Trainer.train_step` (the family's float32 loss, gradient clipping, fused
AdamW and schedule), the reference (`experiments.benchmarks.plain_gpt.PlainGPT`) through a
hand-written step with `F.cross_entropy`, the same clipping and the same AdamW (fused too).
Blocks of steps alternate between the two, so background load hits both alike; the table
gives medians of tokens per second and the ratio. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.benchmarks.table import median, row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from experiments.benchmarks.plain_gpt import PlainGPT
    from interp.optimizer import make_optimizer
    from interp.presets import resolve_config
    from interp.registry import family_of
    from interp.training import Trainer

    config = resolve_config("graph-walk", [])
    trainer = Trainer(config, Path("/tmp/interp_walk_bench_unused"), progress=False)
    torch.manual_seed(0)
    plain = PlainGPT(config)
    # The same optimizer as the project's trainer for this family (fused AdamW).
    fused = family_of(config).fused_optimizer
    optimizer, scheduler = make_optimizer(plain.parameters(), config.train, fused=fused)
    sampler = family_of(config).sampler(trainer.task, config.train, torch.device("cpu"))
    clip = config.train.grad_clip

    def plain_step() -> None:
        tokens, labels = sampler.next_batch()
        logits = plain(tokens)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), clip)
        optimizer.step()
        scheduler.step()

    tokens_per_step = config.train.batch_size * config.task.context
    timing = {"project": trainer.train_step, "plain": plain_step}
    for step in timing.values():  # warm-up
        for _ in range(3):
            step()
    rates: dict[str, list[float]] = {name: [] for name in timing}
    for _ in range(args.rounds):
        for name, step in timing.items():
            start = time.perf_counter()
            for _ in range(args.block):
                step()
            rates[name].append(args.block * tokens_per_step / (time.perf_counter() - start))
    walks = family_of(config).sampler(trainer.task, config.train, torch.device("cpu"))
    start, draws = time.perf_counter(), 200
    for _ in range(draws):
        walks.next_batch()
    sampled = draws * tokens_per_step / (time.perf_counter() - start)

    project, reference = median(rates["project"]), median(rates["plain"])
    row("walk", "torch threads", str(torch.get_num_threads()))
    row("walk", "project Trainer step (graph-walk preset)", f"{project:,.0f} tok/s")
    row("walk", "plain PyTorch causal GPT, same shape and optimizer", f"{reference:,.0f} tok/s")
    ratios = ", ".join(f"{a / b:.2f}" for a, b in zip(rates["project"], rates["plain"]))
    row("walk", "project / plain (target >= 1.0x)", f"{project / reference:.2f}x", ratios)
    row("walk", "walk sampler alone", f"{sampled:,.0f} tok/s")
    row("walk", "sampler / trainer consumption (target >= 10x)", f"{sampled / project:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
