"""`interp` command line: a thin layer over the Python API.

`main(argv) -> int` is the whole CLI as a plain function (tests call it directly). Bad
input (unknown preset or field, wrong type, out-of-range value, a folder in the way)
prints one line naming the flag or field and returns 2, before anything is written.
Heavy libraries (torch, TransformerLens, plotly) are imported inside the commands, so
`interp --help` is instant. The CLI is the composition root: it ties the layers together
(training in `interp`, analyses and the report in `circuits`); what differs between task
families (presets, progress measures, analysis parts and their flags, summary lines)
comes from the families through `interp.registry`.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from interp import cli_import, cli_stacked
from interp.cli_llc import LlcChainsOption, LlcStepsOption, check_llc_flags
from interp.cli_tracking import LogDirOption, LogOption, analysis_tracker, log_analysis, run_tracker
from interp.config import all_keys
from interp.presets import PRESETS, preset_names, resolve_config  # noqa: F401 (resolve_config: API)
from interp.registry import AnalysisPart, all_families, family_of

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train small hooked transformers on algorithmic tasks and watch circuits form.",
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


@app.command()
def train(
    preset_or_config: Annotated[
        str,
        typer.Argument(
            help=f"A preset ({', '.join(preset_names())}) or a .toml/.json config file."
        ),
    ] = "",
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Run folder to create.")
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            "-s",
            help="Override a field: section.field=value (e.g. train.lr=3e-3). Repeatable. Keys: "
            + ", ".join(all_keys()),
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue the run in --out from its last complete checkpoint."
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing run in --out.")
    ] = False,
    device: Annotated[
        Optional[str], typer.Option("--device", help="cpu, cuda or auto (overrides train.device).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="torch CPU threads (0 = torch's default). 1 is faster when other jobs share the "
            "cores.",
        ),
    ] = 0,
    stop_on_collapse: Annotated[
        bool,
        typer.Option(
            "--stop-on-collapse",
            help="Stop at the first collapse (train accuracy > 20 points below its best for 3 "
            "checkpoints); sets train.stop_on_collapse.",
        ),
    ] = False,
    init_from: Annotated[
        Optional[str],
        typer.Option(
            "--init-from",
            help="Start from another run's weights: RUN_DIR (its last checkpoint) or RUN_DIR@STEP; "
            "fresh optimizer. Sets train.init_from.",
        ),
    ] = None,
    log: LogOption = None,
    log_dir: LogDirOption = None,
    seeds: cli_stacked.SeedsOption = None,
) -> int:
    """Train a model and checkpoint it into a run folder (with --seeds: several members at once)."""
    if out is None:
        raise CliError("--out: required (the run folder to write)")
    _set_threads(threads)
    members = None if seeds is None else cli_stacked.parse_seeds(seeds, CliError)
    stacked_options = dict(overwrite=overwrite, quiet=quiet, log=log, log_dir=log_dir)
    if resume:
        from interp.training import resume as resume_run

        if preset_or_config or set_ or stop_on_collapse or init_from is not None or seeds:
            raise CliError(
                "--resume: continues the run's own config; do not pass a preset, --set, --seeds "
                "or --stop-on-collapse"
            )
        if cli_stacked.is_stacked(out):  # members trained together: all of them
            return cli_stacked.train_members(None, out, None, **stacked_options)
        tracker = run_tracker(log, out, log_dir)  # None without --log; the trainer closes it
        result = resume_run(out, progress=not quiet, tracker=tracker)
    else:
        if not preset_or_config:
            raise CliError("PRESET_OR_CONFIG: required (a preset name or a config file)")
        overrides = list(set_ or [])
        if device is not None:
            overrides.append(f"train.device={device}")
        if stop_on_collapse:
            overrides.append("train.stop_on_collapse=true")
        if init_from is not None:
            overrides.append(f"train.init_from={init_from}")
        config = resolve_config(preset_or_config, overrides)
        if members is not None:  # members trained together (interp.stacked)
            return cli_stacked.train_members(config, out, members, **stacked_options)
        from interp.training import train as train_run

        tracker = run_tracker(log, out, log_dir)  # None without --log; the trainer closes it
        result = train_run(config, out, progress=not quiet, overwrite=overwrite, tracker=tracker)
    cli_stacked.report(result)
    return EXIT_OK


def _all_parts() -> dict[str, AnalysisPart]:
    """Every family's analysis parts by name; help says which families have each."""
    parts: dict[str, AnalysisPart] = {}
    kinds: dict[str, list[str]] = {}
    for family in all_families():
        for part in family.parts:
            parts.setdefault(part.name, part)
            kinds.setdefault(part.name, []).append(family.kind)
    return {
        name: AnalysisPart(name, f"{part.help} ({', '.join(kinds[name])})")
        for name, part in parts.items()
    }


def analyze(
    run_dir: cli_import.RunOrSourceArgument,
    task: cli_import.TaskOption = None,
    out: cli_import.ImportOutOption = None,
    every: cli_import.EveryOption = None,
    tl_config: cli_import.TlConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    html: Annotated[
        Optional[Path],
        typer.Option(
            "--html",
            help="Also write the self-contained HTML report here (it is always written to "
            "RUN_DIR/analysis/report.html unless --no-figures).",
        ),
    ] = None,
    no_figures: Annotated[
        bool, typer.Option("--no-figures", help="Skip the plotly figures (faster).")
    ] = False,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="torch CPU threads (0 = torch's default). Checkpoints are analyzed this many at a "
            "time, one thread each.",
        ),
    ] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    log: LogOption = None,
    log_dir: LogDirOption = None,
    llc_steps: LlcStepsOption = None,
    llc_chains: LlcChainsOption = None,
    **selected: bool,
) -> int:
    """Analyze every complete checkpoint of a run (no part flag: every analysis its task family
    has except the opt-in --circuits)."""
    _set_threads(threads)
    check_llc_flags(llc_steps, llc_chains, selected.get("llc", False), CliError)
    from circuits.pipeline.analyze import analyze_run
    from circuits.pipeline.files import dumps, write_analysis
    from interp.memory import keep_freed_memory
    from interp.runs import load_run

    keep_freed_memory()  # ~30 % faster: no page faults for the per-checkpoint temporaries

    run_dir = cli_import.analysis_source(
        run_dir, task=task, out=out, tl_config=tl_config, every=every, error=CliError
    )
    run = load_run(run_dir)
    parts = tuple(name for name, on in selected.items() if on)
    own = {part.name for part in family_of(run.config).parts}
    foreign = [name for name in parts if name not in own]
    if foreign:
        flags = ", ".join(AnalysisPart(name, "").flag for name in foreign)
        raise CliError(
            f"{flags}: not an analysis of {run.config.task.kind} tasks; "
            f"its flags: {', '.join(AnalysisPart(n, '').flag for n in sorted(own)) or 'none'}"
        )
    tracker = analysis_tracker(log, run.path, log_dir)  # before the work: a missing extra
    figures = not no_figures or html is not None
    llc = None
    if llc_steps or llc_chains:
        from circuits.analyses.llc import LLCSettings

        llc = LLCSettings().sized(llc_steps, llc_chains)
    result = analyze_run(run, parts or None, progress=not quiet, figures=figures, llc=llc)
    info = write_analysis(result, figures=figures)
    log_analysis(tracker, result.rows, run.metrics)  # nothing without --log
    if html is not None and info.get("figures"):
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_bytes(Path(info["figures"]).read_bytes())
        info["html"] = str(html)
    if as_json:
        typer.echo(dumps(info))
    else:
        from interp.summary_text import human_summary

        typer.echo(human_summary(info, result.family.summary_lines(info)))
    for item in info["skipped"]:
        typer.echo(f"skipped step {item['step']}: {item['reason']}", err=True)
    raise typer.Exit(EXIT_SKIPPED if result.skipped else EXIT_OK)


def _with_part_flags(command):
    """`command` with one `--part-name` flag per analysis part of the registered families
    (typer reads the signature, so the flags and their help come from the declarations)."""
    signature = inspect.signature(command, eval_str=True)
    fixed = [
        p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    flags = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=False,
            annotation=Annotated[bool, typer.Option(part.flag, help=part.help)],
        )
        for name, part in _all_parts().items()
    ]

    def wrapper(**kwargs):
        named = {p.name: kwargs.pop(p.name) for p in fixed}
        return command(**named, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*fixed, *flags])
    wrapper.__doc__, wrapper.__name__ = command.__doc__, command.__name__
    return wrapper


def _install_analyze() -> None:
    """(Re)register `analyze` with the flags of every family registered now (a family
    registered after this module was imported, e.g. a plugin, gets its flags too)."""
    app.registered_commands[:] = [c for c in app.registered_commands if c.name != "analyze"]
    app.command("analyze")(_with_part_flags(analyze))


_install_analyze()


@app.command()
def relist(
    run_dir: Annotated[Path, typer.Argument(help="A run folder whose manifest.json was lost.")],
) -> int:
    """Rebuild a lost manifest: verify that each checkpoint file loads, and list those that do."""
    from interp.run_writer import relist_checkpoints

    steps, skipped = relist_checkpoints(run_dir)
    span = f" (steps {steps[0]}–{steps[-1]})" if steps else ""
    typer.echo(f"listed {len(steps)} checkpoints{span} in {run_dir / 'manifest.json'}")
    for item in skipped:
        typer.echo(f"left out: {item}", err=True)
    raise typer.Exit(EXIT_SKIPPED if skipped else EXIT_OK)


def _set_threads(threads: int) -> None:
    if threads < 0:
        raise CliError(f"--threads: must be >= 0, got {threads}")
    if threads:
        import torch

        torch.set_num_threads(threads)


@app.command("import")
def import_(
    src: cli_import.SourceArgument,
    out: cli_import.RunOutOption = None,
    task: cli_import.TaskOption = None,
    tl_config: cli_import.TlConfigOption = None,
    every: cli_import.EveryOption = None,
) -> None:
    """Import checkpoints trained elsewhere (TransformerLens names, or one file holding a whole
    run such as the published full_run_data.pth) as a run folder."""
    cli_import.run_import(src, out, task, tl_config, every, CliError)


@app.command()
def presets() -> None:
    """List the built-in presets."""
    for name in preset_names():
        cfg = PRESETS[name]
        family = family_of(cfg)
        typer.echo(
            f"{name:16s} {cfg.task.kind}: {family.describe(cfg.task)}; layers={cfg.model.n_layers} "
            f"steps={cfg.train.steps} lr={cfg.train.lr} wd={cfg.train.weight_decay}"
        )


@app.command()
def ensemble(
    members: Annotated[
        list[str],
        typer.Argument(
            help="Graph-walk run folders: RUN_DIR (last checkpoint), RUN_DIR@STEP or RUN_DIR@best."
        ),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Folder for ensemble.json and ensemble.md."),
    ] = None,
    combine: Annotated[
        str,
        typer.Option("--combine", help="The default combination, logits or probs (both computed)."),
    ] = "logits",
    threads: Annotated[int, typer.Option("--threads", help="torch CPU threads.")] = 1,
) -> int:
    """Evaluate K members as one predictor on the same test walks: the paired excess over H of
    logit and probability averaging, per-node KL, beside the count-based learners."""
    from circuits.families.graph_walk import ensemble as walk_ensemble

    _set_threads(threads)
    result = walk_ensemble.evaluate_ensemble(members, default=combine)
    for line in walk_ensemble.summary_lines(result):
        typer.echo(line)
    if out is not None:
        summary, report = walk_ensemble.write_ensemble(result, out)
        typer.echo(f"summary: {summary}\nreport: {report}")
    return EXIT_OK


from interp.cli_sweep import sweep_app  # noqa: E402 (the sub-command group, after `app`)

app.add_typer(sweep_app, name="sweep")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of exiting. A usage error (unknown option or
    command, missing argument, bad value) is click's "Usage:" and "Error:" lines, exit code 2."""
    from interp.errors import USER_ERRORS, cli_message
    from interp.typer_compat import click_exception

    _install_analyze()
    try:
        result = app(
            args=list(sys.argv[1:] if argv is None else argv),
            standalone_mode=False,
            prog_name="interp",
        )
    except (CliError, *USER_ERRORS) as exc:
        typer.echo(f"error: {cli_message(exc)}", err=True)
        return EXIT_USAGE
    except typer.Exit as exc:
        return exc.exit_code
    except click_exception() as exc:
        exc.show()
        return EXIT_USAGE
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    return result if isinstance(result, int) else EXIT_OK


def entry_point() -> None:
    sys.exit(main())
