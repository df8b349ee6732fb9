"""Continue a finished run into a new folder for more steps, from the weights of its last
checkpoint. The optimizer state is not saved in runs, so AdamW restarts (with the run's
warmup): this is a continuation, not a bit-exact resume.

    python experiments/continue_entity.py runs/two-hop runs/two-hop-cont 13000
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch

from circuits.entity import make_entity_evaluator
from interp.model import load_state
from interp.runs import load_run
from interp.training import Trainer, prepare_run_dir


def main(argv: list[str]) -> int:
    source, out, steps = argv[0], argv[1], int(argv[2])
    torch.set_num_threads(1)
    run = load_run(source)
    start = run.steps[-1]
    config = replace(run.config, train=replace(run.config.train, steps=steps, ckpt_every=250, ckpt_log_until=0))
    prepare_run_dir(__import__("pathlib").Path(out), overwrite=True)
    trainer = Trainer(config, out, evaluators=[make_entity_evaluator(config)], progress=False)
    load_state(trainer.model, run.weights_at(start))
    trainer.write_header()
    trainer.step = start
    trainer.checkpoint()
    result = trainer.run()
    print(result.final_step, {k: v for k, v in result.last_row.items() if "acc" in k or "circuit" in k})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
