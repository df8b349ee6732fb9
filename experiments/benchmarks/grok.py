"""Time-to-grok of one recipe and seed, appended as a JSON line (for long background runs).

    python -m experiments.benchmarks.grok anchor --seed 999 --out /tmp/grok.jsonl
    python -m experiments.benchmarks.grok mod-add-fast --seed 999 --out /tmp/grok.jsonl

`anchor` is Nanda et al.'s recipe (the `mod-add` preset's optimizer settings) in the
full-sequence reference (`reference.py`: TransformerLens's own forward, no shortcut); any
other name is a preset trained by the project's Trainer.
Both stop at the first evaluation with test accuracy >= 0.99 (a measurement of when the
held-out accuracy crosses 99 %, not a selection). `bench.py --grok-results`
reads these lines into its table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


class _Grokked(Exception):
    """Raised by the measuring evaluator at the first evaluation with test accuracy >= target."""


def time_to_grok_trainer(config, run_dir: Path, target: float = 0.99) -> dict:
    """Wall-clock of `interp train` (checkpoints and evaluation included) until test acc >= target.

    This *measures* when the held-out accuracy crosses the target, which is what a
    time-to-grok is; it selects nothing. The trainer's own early stopping reads only the
    validation split, so the measurement is taken by an evaluator that ends the run.
    """
    from interp.run_writer import prepare_run_dir
    from interp.training import Trainer

    config = replace(config, train=replace(config.train, stop_at_val_acc=0.0))
    start = time.perf_counter()

    def watch(model, task, by_split):
        logits, labels = by_split["test"]
        if float((logits.argmax(-1) == labels).double().mean()) >= target:
            raise _Grokked
        return {}

    trainer = Trainer(config, run_dir, evaluators=[watch], progress=False)
    prepare_run_dir(Path(run_dir), overwrite=True)
    try:
        result = trainer.run()
        grok_step, steps_run = None, result.final_step
    except _Grokked:
        grok_step = steps_run = trainer.step
    seconds = time.perf_counter() - start
    return {"grok_step": grok_step, "seconds": seconds, "steps_run": steps_run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe")
    parser.add_argument("--seed", type=int, default=999)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-steps", type=int, default=40_000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from interp.presets import PRESETS

    name = "mod-add" if args.recipe == "anchor" else args.recipe
    config = PRESETS[name].with_overrides(
        [f"model.seed={args.seed}", f"train.steps={args.max_steps}", *args.overrides]
    )
    if args.recipe == "anchor":
        from experiments.benchmarks.reference import train_reference_to_grok

        log_file = args.out.with_suffix(f".anchor_s{args.seed}.log")
        with open(log_file, "a") as log:
            res = train_reference_to_grok(
                config,
                max_steps=args.max_steps,
                eval_every=args.eval_every,
                log=lambda line: (log.write(line + "\n"), log.flush()),
            )
        row = {"grok_step": res.grok_step, "seconds": res.seconds, "steps_run": res.steps_run}
    else:
        config = config.with_overrides([f"train.ckpt_every={args.eval_every}"])
        import hashlib

        tag = hashlib.sha1(" ".join(args.overrides).encode()).hexdigest()[:8]
        row = time_to_grok_trainer(config, Path(f"/tmp/interp_grok_{name}_s{args.seed}_{tag}"))
        row["run_dir"] = f"/tmp/interp_grok_{name}_s{args.seed}_{tag}"
    row.update(
        recipe=args.recipe,
        seed=args.seed,
        threads=torch.get_num_threads(),
        overrides=args.overrides,
        finished=time.strftime("%H:%M:%S"),
    )
    with open(args.out, "a") as handle:
        handle.write(json.dumps(row) + "\n")
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
