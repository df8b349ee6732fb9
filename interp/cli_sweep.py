"""`interp sweep run|analyze`: families of runs from the command line (a thin layer over
`interp.sweep.runner` and `interp.sweep.study`; part of the CLI, the composition root)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from interp.cli_tracking import LogDirOption, LogOption

sweep_app = typer.Typer(
    no_args_is_help=True,
    help="Run a sweep of runs from a TOML spec, and analyze it (table, phase diagram, fits).",
)

EXIT_OK, EXIT_FAILED = 0, 1


class Backend(str, Enum):
    """Where the runs run (a choice, so a typo is a usage error that lists both)."""

    local = "local"
    ray = "ray"


#: The worker and backend options `sweep run` and `sweep search` share.
WorkersOption = Annotated[
    int, typer.Option("--workers", "-w", help="Local worker processes (0 = one per core).")
]
BackendOption = Annotated[
    Backend, typer.Option("--backend", help="local (worker processes here) or ray.")
]
AddressOption = Annotated[
    Optional[str],
    typer.Option("--address", help="Ray: auto (a running cluster) or ray://HOST:PORT."),
]
CpusOption = Annotated[float, typer.Option("--cpus", help="Ray: CPUs requested per run.")]
GpusOption = Annotated[float, typer.Option("--gpus", help="Ray: GPUs requested per run.")]


@sweep_app.command("run")
def run(
    spec: Annotated[
        Optional[Path],
        typer.Argument(
            help="The sweep spec (TOML; see interp.sweep.spec). Optional with --resume."
        ),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The sweep folder.")] = None,
    workers: WorkersOption = 0,
    threads: Annotated[
        int, typer.Option("--threads", help="torch threads per worker (1 is fastest on a CPU).")
    ] = 1,
    backend: BackendOption = Backend.local,
    address: AddressOption = None,
    cpus: CpusOption = 1.0,
    gpus: GpusOption = 0.0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Finish the stopped sweep in --out.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    log: LogOption = None,
    log_dir: LogDirOption = None,
) -> int:
    """Run every run of SPEC into --out/runs/ (exit 1 if any run failed; with --log, each run's
    axis values are its hyperparameters)."""
    from interp.cli_tracking import sweep_log
    from interp.sweep.runner import run_sweep
    from interp.sweep.spec import SpecError

    if out is None:
        raise SpecError("--out: required (the sweep folder)")
    if workers < 0 or threads < 0:
        raise SpecError("--workers/--threads: must be >= 0")
    outcome = run_sweep(
        spec,
        out,
        workers=workers,
        threads=threads,
        backend=backend.value,
        address=address,
        resources={"num_cpus": cpus, "num_gpus": gpus},
        resume=resume,
        progress=not quiet,
        log=sweep_log(log, log_dir),
    )
    typer.echo(
        f"sweep {out}: {outcome.done}/{outcome.total} runs done ({outcome.skipped} already), "
        f"{len(outcome.failed)} failed, {outcome.seconds:.0f} s, "
        f"{outcome.disk_bytes / 1e6:.0f} MB on disk"
    )
    for name, error in outcome.failed:
        typer.echo(f"failed: {name}: {error}", err=True)
    return EXIT_FAILED if outcome.failed else EXIT_OK


@sweep_app.command("search")
def search(
    spec: Annotated[
        Optional[Path],
        typer.Argument(help="A sweep spec with a [search] table (interp.sweep.search)."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The sweep folder.")] = None,
    workers: WorkersOption = 0,
    threads: Annotated[int, typer.Option("--threads", help="torch threads per worker.")] = 1,
    backend: BackendOption = Backend.local,
    address: AddressOption = None,
    cpus: CpusOption = 1.0,
    gpus: GpusOption = 0.0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Re-plan the search in --out and finish it.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> int:
    """Neighbour search per group: walk the grid from the start point until a point beats all
    its one-step neighbours on the objective (exit 1 if any trial failed)."""
    from interp.sweep.runner import default_workers
    from interp.sweep.search_run import SEARCH_FILE, run_search, search_lines
    from interp.sweep.spec import SpecError

    if out is None:
        raise SpecError("--out: required (the sweep folder)")
    if workers < 0 or threads < 0:
        raise SpecError("--workers/--threads: must be >= 0")
    outcome = run_search(
        spec,
        out,
        resume=resume,
        workers=workers or default_workers(),
        threads=threads,
        backend=backend.value,
        address=address,
        resources={"num_cpus": cpus, "num_gpus": gpus},
        progress=not quiet,
    )
    for line in search_lines(out):
        typer.echo(line)
    typer.echo(
        f"search {out}: {outcome.runs} runs ({outcome.ran} run now, {outcome.rounds} rounds), "
        f"{len(outcome.failed)} failed, {outcome.seconds:.0f} s; {out / SEARCH_FILE}"
    )
    for name, error in outcome.failed:
        typer.echo(f"failed: {name}: {error}", err=True)
    return EXIT_FAILED if outcome.failed else EXIT_OK


@sweep_app.command("analyze")
def analyze(
    sweep_dir: Annotated[Path, typer.Argument(help="A sweep folder (interp sweep run --out).")],
    x: Annotated[Optional[str], typer.Option("--x", help="Phase diagram: x axis.")] = None,
    y: Annotated[Optional[str], typer.Option("--y", help="Phase diagram: y axis.")] = None,
) -> int:
    """Write sweep.csv (one row per run: axes, final metrics, events) and sweep_report.html."""
    from interp.sweep.spec import SpecError
    from interp.sweep.study import load_sweep

    sweep = load_sweep(sweep_dir)
    for axis in (x, y):
        if axis is not None and axis not in sweep.axes:
            raise SpecError(f"--x/--y: {axis!r} is not an axis of this sweep: {sweep.axes}")
    table = sweep.write_table()
    from circuits.viz.sweep_report import write_sweep_report

    report = write_sweep_report(sweep, x=x, y=y)
    counts = sweep.table["outcome"].value_counts().to_dict() if "outcome" in sweep.table else {}
    typer.echo(f"{len(sweep.table)} runs; outcomes {counts}")
    from interp.sweep.search_run import search_lines

    for line in search_lines(sweep_dir):  # a search's accepted points and certificates
        typer.echo(line)
    typer.echo(f"table: {table}\nreport: {report}")
    return EXIT_OK
