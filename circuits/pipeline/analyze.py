"""Analyze every checkpoint of a run: a streamed map over checkpoints, then files.

`analyze_run(run, parts)` loads each checkpoint once, into one model object per worker
(memory stays flat in the number of checkpoints), and returns a `RunAnalysis`: one table
row per checkpoint plus the small results the figures need (Fourier norms, clusters,
attribution and, with `figures`, the circuit graph and mean attention pattern), all from
the checkpoint's one forward pass. `circuits.pipeline.files.write_analysis` writes the table,
the summary and the report, which reads only the `RunAnalysis`. Nothing here prints.

What is computed per checkpoint is the task family's (`analyze_run` asks it): the modular
family's analysis is `circuits.families.modular.analysis`; the entity families' and a family
without analyses of its own are here (`analyze_entity_run`, `analyze_basic_run`), on the
shared machinery (`analyze_each`, `_map_checkpoints`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.analyses.attention import (
    mean_attention_pattern,
    pattern_sample,
)
from circuits.analyses.circuit_graph import CircuitGraph
from circuits.analyses.phases import Phases
from circuits.pipeline.checkpoint_map import map_checkpoints as _map_checkpoints
from circuits.pipeline.figure_steps import FigureSteps

# Re-exported: the analysis' files are written by `circuits.pipeline.files`.
from circuits.pipeline.files import BASE_COLUMNS as BASE_COLUMNS
from circuits.pipeline.files import FIGURES_FILE as FIGURES_FILE
from circuits.pipeline.files import SUMMARY_FILE as SUMMARY_FILE
from circuits.pipeline.files import TABLE_FILE as TABLE_FILE
from circuits.pipeline.files import dumps as dumps
from circuits.pipeline.files import summary as summary
from circuits.pipeline.files import write_analysis as write_analysis
from circuits.pipeline.files import write_table as write_table
from interp.collapse import CollapseEvent, detect_collapses
from interp.config import RunConfig
from interp.metrics import SMALL_SPLIT, wilson_interval
from interp.registry import family_of, get_family
from interp.runs import Run, RunError, no_checkpoints_message, read_best


def available_parts(run: Run) -> tuple[str, ...]:
    """The analysis parts the run's task family declares (`interp.registry.AnalysisPart`)."""
    return tuple(part.name for part in family_of(run.config).parts)


def default_parts(run: Run) -> tuple[str, ...]:
    """The parts an analysis runs when none is named: all but the opt-in ones (`--circuits`)."""
    return tuple(part.name for part in family_of(run.config).parts if part.default)


@dataclass(frozen=True)
class CheckpointAnalysis:
    """One checkpoint: its table row and the small results its figures are drawn from."""

    step: int
    row: dict[str, Any]
    embed_freq_norms: Tensor | None = None
    unembed_freq_norms: Tensor | None = None
    neuron_frequency: Tensor | None = None
    final_attention: Tensor | None = None
    dla_names: list[str] | None = None
    dla: Tensor | None = None
    #: the circuit graph (`circuits.analyses.circuit_graph`), neurons grouped by the final
    #: checkpoint's clusters
    graph: CircuitGraph | None = None
    #: mean attention pattern over `RunAnalysis.pattern_examples` inputs (the circuitsvis view)
    attention_pattern: Float[Tensor, "layer head query_pos key_pos"] | None = None


@dataclass(frozen=True)
class RunAnalysis:
    run_dir: Path
    parts: tuple[str, ...]
    checkpoints: list[CheckpointAnalysis]
    key_frequencies: list[int]
    phases: Phases
    skipped: list[tuple[str, str]] = field(default_factory=list)
    p: int = 0
    #: the task family (`interp.registry`)
    kind: str = ""
    #: collapse events found in this table by the task's rule (`interp.collapse`)
    collapses: list[CollapseEvent] = field(default_factory=list)
    #: examples behind each accuracy column ({"test_acc": 8939, "test_ood_acc": 19, ...})
    split_sizes: dict[str, int] = field(default_factory=dict)
    #: the manifest's `best` checkpoint (selected on validation or training metrics), if any
    best: dict[str, Any] | None = None
    #: the run's configuration (the report's header)
    config: RunConfig | None = None
    #: the inputs averaged by each `attention_pattern` (a seeded sample), and its position labels
    pattern_examples: int = 0
    position_labels: tuple[str, ...] = ()
    #: circuit discovery at every checkpoint (`--circuits`, `circuits.analyses.circuit_timeline`)
    circuits: Any = None

    def interval(self, column: str, value: float) -> tuple[float, float] | None:
        """95 % Wilson interval of an accuracy column whose split has < SMALL_SPLIT examples."""
        n = self.split_sizes.get(column)
        return wilson_interval(value, n) if n is not None and n < SMALL_SPLIT else None

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [c.row for c in self.checkpoints]

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    @property
    def family(self):
        return get_family(self.kind)

    def leads(self) -> dict[str, int | None]:
        """First steps at which the progress measure and test accuracy reach a level (by family),
        and when each measure of `circuits.analyses.phases.MOVING` present moves
        (`half_change_step`)."""
        from circuits.analyses.phases import MOVING, half_change_step

        leads = self.family.leads(self.rows)
        for column in MOVING:
            if any(column in row for row in self.rows):
                leads[f"{column} moves"] = half_change_step(self.rows, column)
        return leads


def _require(loaded: bool, run: Run, steps: list[int]) -> None:
    if not loaded:
        raise RunError(f"{run.path}: none of the {len(steps)} checkpoints could be loaded")


def default_workers() -> int:
    """Checkpoints analyzed in parallel: one per torch thread (`--threads`), i.e. per core."""
    return max(1, torch.get_num_threads())


def analyze_run(
    run: Run,
    parts: tuple[str, ...] | None = None,
    steps: list[int] | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    figures: bool = True,
) -> RunAnalysis:
    """Analyze the run's complete checkpoints, each loaded once; damaged ones are skipped and
    reported.

    `parts` are the run's family's analysis parts (default: all but the opt-in ones,
    `default_parts`; `circuits` is the family-independent circuit discovery). `workers`
    checkpoints are analyzed in parallel (default: `default_workers()`, one per torch
    thread), each worker with its own model objects. `progress` shows a bar over the
    checkpoints (done/total, rate, ETA, and which parts) on stderr. `figures` also computes
    what only the report draws (circuit graph, attention patterns); without it, no such views.
    """
    family = family_of(run.config)
    parts = tuple(parts or default_parts(run))
    unknown = set(parts) - set(available_parts(run))
    if unknown:
        from interp.config import ConfigError

        raise ConfigError(
            f"analysis parts {sorted(unknown)} do not apply to task kind {run.config.task.kind!r}; "
            f"its parts: {', '.join(available_parts(run)) or 'none'}"
        )
    steps = list(run.steps if steps is None else steps)
    if not steps:
        raise RunError(no_checkpoints_message(run.path))
    workers = default_workers() if workers is None else workers
    own = tuple(part for part in parts if part not in ("circuits", "llc"))
    result = family.analyze(run, own, steps, workers=workers, progress=progress, figures=figures)
    if "circuits" in parts:
        from circuits.analyses.circuit_timeline import analyze_circuits, with_circuits

        label = "circuits" if progress else None
        timeline = analyze_circuits(run, result.steps, workers=workers, progress=label)
        result = with_circuits(result, timeline)
    if "llc" in parts:
        from circuits.analyses.llc import analyze_llc, with_llc

        result = with_llc(result, analyze_llc(run, result, workers=workers))
    from dataclasses import replace

    return replace(result, parts=parts)


def _label(parts: tuple[str, ...], progress: bool) -> str | None:
    return f"analyze {'+'.join(parts) or 'accuracy'}" if progress else None


def _run_facts(
    run: Run, results: list[CheckpointAnalysis], figures: bool, position_labels
) -> dict[str, Any]:
    """Collapse events (the task's rule on this table), split sizes, the `best` pointer, the
    config."""
    task = run.task
    sizes = {f"{name}_acc": len(index) for name, index in task.splits.items()}
    sizes["train_acc"] = len(task.train_index)
    if "test_acc" not in sizes:  # the base test columns are the first held-out split
        sizes["test_acc"] = len(task.splits[task.held_out_splits[0]])
    rule = family_of(run.config).collapse_rule(task)
    collapses = detect_collapses([r.row for r in results], rule)
    phases = family_of(run.config).phases([r.row for r in results], collapses)
    return dict(
        collapses=collapses,
        phases=phases,
        split_sizes=sizes,
        best=read_best(run.path),
        config=run.config,
        pattern_examples=len(pattern_sample(task.tokens)) if figures else 0,
        position_labels=tuple(position_labels),
    )


def analyze_entity_run(
    run: Run,
    parts: tuple[str, ...],
    steps: list[int],
    *,
    workers: int,
    progress: bool,
    figures: bool = True,
) -> RunAnalysis:
    """The entity families' analysis
    (`circuits.families.entity.measures.analyze_entity_checkpoint`) of every
    checkpoint, plus, with `figures`, the mean attention pattern at the checkpoints a slider
    may show (the circuit graph of these families is left to circuit discovery)."""
    from dataclasses import replace

    from circuits.families.entity.analysis import analyze_entity_checkpoint, random_init_model

    task = run.task
    family = family_of(run.config)
    pattern_tokens = pattern_sample(task.tokens)
    figure_steps = FigureSteps(steps, family.milestones) if figures else None

    def make_analyze_one():
        # The probes' random-init baseline: one model per worker (hooks are per model object).
        random_model = random_init_model(run.config) if "probes" in parts else None

        def analyze_one(model, step: int):
            result = analyze_entity_checkpoint(
                model, task, run.config, parts, random_model=random_model, step=step
            )
            if figure_steps is not None and figure_steps.wants(step, result.row):
                result = replace(
                    result, attention_pattern=mean_attention_pattern(model, pattern_tokens)
                )
            return result

        return analyze_one

    return analyze_each(
        run,
        parts,
        steps,
        make_analyze_one,
        workers=workers,
        progress=progress,
        figure_steps=figure_steps,
        position_labels=family.position_names,
    )


def analyze_each(
    run: Run,
    parts: tuple[str, ...],
    steps: list[int],
    make_analyze_one,
    *,
    workers: int = 1,
    progress: bool = False,
    figure_steps: FigureSteps | None = None,
    position_labels: tuple[str, ...] = (),
) -> RunAnalysis:
    """The `RunAnalysis` of `analyze_one(model, step)` mapped over the checkpoints (damaged ones
    skipped and reported), with the family's phases, collapses, split sizes and `best`.

    `make_analyze_one()` is called once per worker and returns `analyze_one`, whose result is
    a frozen per-checkpoint object with `.step` and `.row` (its table columns). This is what
    a family's `analyze` needs to do beyond computing one checkpoint."""
    results, skipped = _map_checkpoints(
        run,
        steps,
        make_analyze_one,
        workers=workers,
        progress=_label(parts, progress),
        figure_steps=figure_steps,
    )
    _require(bool(results), run, steps)
    return RunAnalysis(
        run_dir=run.path,
        parts=parts,
        checkpoints=results,
        key_frequencies=[],
        skipped=skipped,
        kind=run.config.task.kind,
        **_run_facts(run, results, figure_steps is not None, position_labels),
    )


def basic_columns(
    model, run: Run, evaluators=()
) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """Loss and accuracy on every split plus the `train`/`test` base columns (the last training
    split and the first held-out one, when no split has those names), the columns of
    `evaluators` (the family's training-time progress measures, `Family.evaluators`), and the
    logits by split."""
    from interp.metrics import evaluate

    task = run.task
    row, by_split = evaluate(model, task, torch.device("cpu"), family_of(run.config).forward)
    for base, split in (("train", task.train_splits[-1]), ("test", task.held_out_splits[0])):
        row.setdefault(f"{base}_acc", row[f"{split}_acc"])
        row.setdefault(f"{base}_loss", row[f"{split}_loss"])
    with torch.inference_mode():
        for evaluator in evaluators:
            row.update(evaluator(model, task, by_split))
    return row, by_split


def analyze_basic_run(
    run: Run,
    parts: tuple[str, ...],
    steps: list[int],
    *,
    workers: int,
    progress: bool,
    figures: bool = True,
) -> RunAnalysis:
    """`basic_columns` and the family's training evaluators (its progress measure), for a
    family without analyses of its own (no figure data)."""
    evaluators = family_of(run.config).evaluators(run.config)

    def analyze_one(model, step: int) -> CheckpointAnalysis:
        row, _ = basic_columns(model, run, evaluators)
        return CheckpointAnalysis(step=step, row={"step": step, **row})

    return analyze_each(run, parts, steps, lambda: analyze_one, workers=workers, progress=progress)
