"""`--llc-steps` and `--llc-chains`: the SGLD chains `interp analyze --llc` runs (part of the
CLI; `circuits.analyses.llc.LLCSettings`). Longer chains are for checkpoints whose
`llc_drift` says the default 200 steps have not settled (docs/circuits.md)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

LlcStepsOption = Annotated[
    Optional[int],
    typer.Option(
        "--llc-steps",
        min=2,
        help="SGLD steps per chain for --llc (default 200, the first half burn-in). Longer "
        "chains settle further (the llc_drift column) and cost proportionally.",
    ),
]
LlcChainsOption = Annotated[
    Optional[int],
    typer.Option("--llc-chains", min=2, help="SGLD chains per checkpoint for --llc (default 4)."),
]


def check_llc_flags(steps: int | None, chains: int | None, llc: bool, error: type[Exception]):
    """`error` naming the flag if --llc-steps or --llc-chains is given without --llc."""
    if not llc and (steps is not None or chains is not None):
        raise error(f"{'--llc-steps' if steps is not None else '--llc-chains'}: only with --llc")
