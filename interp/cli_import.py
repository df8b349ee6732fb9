"""The import side of the command line: `interp import` and the import step of `interp analyze
SRC`, with their option declarations (`interp/cli.py` declares the commands with these types and
calls these bodies). Errors are raised as the `error` class the caller passes (the CLI's
one-line, exit-2 error), never as tracebacks. Importing this module does not import torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

SOURCES = (
    "a folder of TransformerLens state dicts (.safetensors/.pt/.pth, step number in each file "
    "name, with its config.json), or one file holding a whole run (a 'state_dicts' list, as "
    "the published full_run_data.pth)."
)
SourceArgument = Annotated[Path, typer.Argument(help="Checkpoints to import: " + SOURCES)]
RunOrSourceArgument = Annotated[
    Path,
    typer.Argument(
        help="A run folder written by `interp train`, or checkpoints to import first (with "
        "--task): " + SOURCES
    ),
]
RunOutOption = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", help="Run folder to create (must not exist, or be empty)."),
]
TaskOption = Annotated[
    Optional[Path],
    typer.Option(
        "--task",
        help="Task spec JSON: operation, p, and train_indices, train_pairs, split_seed + "
        "train_frac, or shuffle_seed + train_frac (Nanda et al.'s trainer). A single-file run "
        "gives p, and its split when it stores one.",
    ),
]
TlConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--tl-config",
        help="TransformerLens config JSON (default: SRC/config.json or SRC/cfg.json).",
    ),
]
EveryOption = Annotated[
    Optional[int],
    typer.Option(
        "--every",
        help="A single-file run's save interval when it lists no epochs: state dict i is step "
        "i*EVERY (default 100, as the published run).",
    ),
]
ImportOutOption = Annotated[
    Optional[Path],
    typer.Option(
        "--out",
        "-o",
        help="Where SRC is imported when it is not a run folder (default: the cache, "
        "$INTERP_CACHE_DIR or ~/.cache/interp, under imports/).",
    ),
]


def _message(exc: Exception) -> str:
    from interp.errors import cli_message

    return cli_message(exc)


def run_import(
    src: Path,
    out: Path | None,
    task: Path | None,
    tl_config: Path | None,
    every: int | None,
    error: type[Exception],
) -> None:
    """`interp import`."""
    if out is None:
        raise error("--out: required (the run folder to create)")
    if task is None:
        raise error("--task: required (a task spec JSON)")
    from interp.importing import ImportCheckpointError, import_tl_checkpoints

    try:
        result = import_tl_checkpoints(src, out, task, tl_config=tl_config, every=every)
    except ImportCheckpointError as exc:
        raise error(_message(exc)) from None
    typer.echo(
        f"imported {len(result.steps)} checkpoints (steps {result.steps[0]}–{result.steps[-1]}) "
        f"into {result.run_dir}"
    )


def analysis_source(
    src: Path,
    *,
    task: Path | None,
    out: Path | None,
    tl_config: Path | None,
    every: int | None,
    error: type[Exception],
) -> Path:
    """The run folder `interp analyze` reads: `src` itself when it is a run folder, else an
    import of it (`interp.import_cache`), announced on stderr (stdout may be --json)."""
    from interp.import_cache import cached_import, is_import_source

    given = {"--task": task, "--out": out, "--tl-config": tl_config, "--every": every}
    if not is_import_source(src):
        flags = [flag for flag, value in given.items() if value is not None]
        if flags:
            raise error(
                f"{flags[0]}: only for checkpoints to import; {src} is not a checkpoint file or "
                "a folder of checkpoint files"
            )
        return src
    if task is None:
        raise error(
            f"--task: required to import {src} (not a run folder of interp): a task spec JSON "
            "with operation, p and the split"
        )
    from interp.importing import ImportCheckpointError

    try:
        run_dir, reused = cached_import(src, task, out=out, tl_config=tl_config, every=every)
    except ImportCheckpointError as exc:
        raise error(_message(exc)) from None
    if reused:
        typer.echo(f"reusing the import of {src} in {run_dir} (source unchanged)", err=True)
    else:
        typer.echo(f"imported {src} into {run_dir}", err=True)
    return run_dir
