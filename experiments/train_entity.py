"""Train an entity-task preset with `circuit_score` logged at every checkpoint.

    python experiments/train_entity.py two-hop runs/two-hop [section.field=value ...]

A thin wrapper until `interp train` wires the entity evaluator itself.
"""

from __future__ import annotations

import sys

import torch

from interp.presets import PRESETS
from interp.training import train


def main(argv: list[str]) -> int:
    preset, out, *overrides = argv
    config = PRESETS[preset].with_overrides(overrides)
    evaluators = []
    try:
        from circuits.entity import make_entity_evaluator

        evaluators.append(make_entity_evaluator(config))
    except ImportError:
        pass
    torch.set_num_threads(1)
    result = train(config, out, evaluators=evaluators, progress=False, overwrite=True)
    print(result.final_step, {k: v for k, v in result.last_row.items() if "acc" in k or "circuit" in k})
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
