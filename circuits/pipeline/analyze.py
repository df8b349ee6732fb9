"""Analyze every checkpoint of a run: the entry point and the result containers.

`analyze_run(run, parts)` resolves the run's task family once and hands it down: the family's
`analyze` computes its per-checkpoint results (a streamed map over checkpoints, one model
object per worker, `circuits.pipeline.checkpoint_map`), then the family-independent parts
(`--circuits`, `--llc`) add their columns. The result is a `RunAnalysis`: one frozen
per-checkpoint result of the family's type (each with `step` and its table `row`) plus the
run's facts (phases, collapses, split sizes, the `best` pointer). `circuits.pipeline.files`
writes it; nothing here prints.

`analyze_each` is what a family's `analyze` needs beyond computing one checkpoint;
`analyze_basic_run` is the analysis of a family without analyses of its own.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch
from jaxtyping import Float
from torch import Tensor

from circuits.analyses.attention import pattern_sample
from circuits.analyses.phases import Phases
from circuits.pipeline.checkpoint_map import map_checkpoints
from circuits.pipeline.figure_steps import SliderSteps
from interp.collapse import CollapseEvent, detect_collapses
from interp.config import RunConfig
from interp.metrics import SMALL_SPLIT, wilson_interval
from interp.registry import family_of
from interp.runs import Run, RunError, no_checkpoints_message, read_best

if TYPE_CHECKING:
    from circuits.families.base import AnalyzedFamily


class CheckpointResult(Protocol):
    """What every family's per-checkpoint result has (a frozen dataclass of typed fields)."""

    step: int
    #: the table's view of the result: column -> value, written to CSV at the edge
    row: dict[str, Any]


@dataclass(frozen=True)
class BasicCheckpoint:
    """One checkpoint of a family without analyses of its own: its table row, and the mean
    attention pattern where a slider may show it."""

    step: int
    row: dict[str, Any]
    attention_pattern: Float[Tensor, "layer head query_pos key_pos"] | None = None


@dataclass(frozen=True)
class RunAnalysis:
    """Every analyzed checkpoint of one run (`checkpoints`, in step order, of the family's
    result type) and the run's facts. A family with run-level results of its own subclasses
    it (the modular family's key frequencies: `ModularRunAnalysis`)."""

    run_dir: Path
    parts: tuple[str, ...]
    checkpoints: list[CheckpointResult]
    phases: Phases
    #: the task family (`circuits.families.base.AnalyzedFamily`), resolved once by `analyze_run`
    family: AnalyzedFamily
    skipped: list[tuple[str, str]] = field(default_factory=list)
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

    @property
    def kind(self) -> str:
        return self.family.kind

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

    def with_columns(self, by_step: dict[int, dict[str, Any]]) -> RunAnalysis:
        """A new analysis whose rows also hold `by_step[step]`'s columns; the frozen results of
        this one are not touched (each checkpoint is a shallow copy with a new row)."""
        checkpoints = []
        for checkpoint in self.checkpoints:
            new = copy.copy(checkpoint)
            object.__setattr__(new, "row", {**checkpoint.row, **by_step.get(checkpoint.step, {})})
            checkpoints.append(new)
        return replace(self, checkpoints=checkpoints)

    def leads(self) -> dict[str, int | None]:
        """First steps at which the family's progress measures reach a level, and when each
        of the family's `moving` columns present moves (`half_change_step`)."""
        from circuits.analyses.phases import half_change_step

        leads = self.family.leads(self.rows)
        for column in self.family.moving:
            if any(column in row for row in self.rows):
                leads[f"{column} moves"] = half_change_step(self.rows, column)
        return leads


def available_parts(family: AnalyzedFamily) -> tuple[str, ...]:
    """The analysis parts the family declares (`interp.registry.AnalysisPart`)."""
    return tuple(part.name for part in family.parts)


def default_parts(family: AnalyzedFamily) -> tuple[str, ...]:
    """The parts an analysis runs when none is named: all but the opt-in ones (`--circuits`)."""
    return tuple(part.name for part in family.parts if part.default)


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
    llc=None,
) -> RunAnalysis:
    """Analyze the run's complete checkpoints, each loaded once; damaged ones are skipped and
    reported.

    `parts` are the run's family's analysis parts (default: all but the opt-in ones,
    `default_parts`; `circuits` and `llc` are family-independent). `workers` checkpoints are
    analyzed in parallel (default: `default_workers()`, one per torch thread), each worker
    with its own model objects. `progress` shows a bar over the checkpoints on stderr.
    `figures` also computes what only the report draws (circuit graph, attention patterns).
    `llc` (a `circuits.analyses.llc.LLCSettings`) sets the `llc` part's chains.
    """
    family = family_of(run.config)
    parts = tuple(parts or default_parts(family))
    unknown = set(parts) - set(available_parts(family))
    if unknown:
        from interp.config import ConfigError

        raise ConfigError(
            f"analysis parts {sorted(unknown)} do not apply to task kind {family.kind!r}; "
            f"its parts: {', '.join(available_parts(family)) or 'none'}"
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
        timeline = analyze_circuits(run, family, result.steps, workers=workers, progress=label)
        result = with_circuits(result, timeline)
    if "llc" in parts:
        from circuits.analyses.llc import LLCSettings, analyze_llc, with_llc

        settings = llc or LLCSettings()
        result = with_llc(result, analyze_llc(run, result, settings, workers=workers))
    return replace(result, parts=parts)


def progress_label(parts: tuple[str, ...], progress: bool) -> str | None:
    """The progress bar's title (None: no bar)."""
    return f"analyze {'+'.join(parts) or 'accuracy'}" if progress else None


def require_loaded(results: list, run: Run, steps: list[int]) -> None:
    """An analysis with no loadable checkpoint is an error, not an empty table."""
    if not results:
        raise RunError(f"{run.path}: none of the {len(steps)} checkpoints could be loaded")


def run_facts(
    run: Run,
    family: AnalyzedFamily,
    results: list[CheckpointResult],
    figures: bool,
    position_labels=(),
) -> dict[str, Any]:
    """The `RunAnalysis` fields beside the checkpoints: collapse events (the family's rule on
    this table), phases, split sizes, the `best` pointer, the config."""
    task = run.task
    sizes = {f"{name}_acc": len(index) for name, index in task.splits.items()}
    sizes["train_acc"] = len(task.train_index)
    if "test_acc" not in sizes:  # the base test columns are the first held-out split
        sizes["test_acc"] = len(task.splits[task.held_out_splits[0]])
    rows = [r.row for r in results]
    collapses = detect_collapses(rows, family.collapse_rule(task))
    return dict(
        family=family,
        collapses=collapses,
        phases=family.phases(rows, collapses),
        split_sizes=sizes,
        best=read_best(run.path),
        config=run.config,
        pattern_examples=len(pattern_sample(task.tokens)) if figures else 0,
        position_labels=tuple(position_labels),
    )


def analyze_each(
    run: Run,
    family: AnalyzedFamily,
    parts: tuple[str, ...],
    steps: list[int],
    make_analyze_one,
    *,
    workers: int = 1,
    progress: bool = False,
    slider_steps: SliderSteps | None = None,
    position_labels: tuple[str, ...] = (),
    done: tuple[CheckpointResult, ...] = (),
    skipped: tuple[tuple[str, str], ...] = (),
    result_type: type[RunAnalysis] = RunAnalysis,
    **fields: Any,
) -> RunAnalysis:
    """The `RunAnalysis` of `analyze_one(model, step)` mapped over the checkpoints (damaged ones
    skipped and reported), with the family's phases, collapses, split sizes and `best`.

    `make_analyze_one()` is called once per worker and returns `analyze_one`, whose result is
    a frozen per-checkpoint object with `.step` and `.row` (`CheckpointResult`). A family that
    analyzed some checkpoints first (the modular family's last one, whose clusters give the key
    frequencies) passes them as `done` (they follow `steps`) and the files it skipped meanwhile
    as `skipped`; `result_type` and `fields` give its own `RunAnalysis` subclass and fields."""
    results, skipped_now = map_checkpoints(
        run,
        steps,
        make_analyze_one,
        workers=workers,
        progress=progress_label(parts, progress),
        done=len(done) + len(skipped),
        figure_steps=slider_steps,
    )
    results = [*results, *done]
    require_loaded(results, run, steps)
    return result_type(
        run_dir=run.path,
        parts=parts,
        checkpoints=results,
        skipped=[*skipped_now, *skipped],
        **run_facts(run, family, results, slider_steps is not None, position_labels),
        **fields,
    )


def basic_columns(
    model, run: Run, family: AnalyzedFamily, evaluators=()
) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """Loss and accuracy on every split plus the `train`/`test` base columns (the last training
    split and the first held-out one, when no split has those names), the columns of
    `evaluators` (the family's training-time progress measures, `Family.evaluators`), and the
    logits by split."""
    from interp.metrics import evaluate

    task = run.task
    row, by_split = evaluate(model, task, torch.device("cpu"), family.forward)
    for base, split in (("train", task.train_splits[-1]), ("test", task.held_out_splits[0])):
        row.setdefault(f"{base}_acc", row[f"{split}_acc"])
        row.setdefault(f"{base}_loss", row[f"{split}_loss"])
    with torch.inference_mode():
        for evaluator in evaluators:
            row.update(evaluator(model, task, by_split))
    return row, by_split


def analyze_basic_run(
    run: Run,
    family: AnalyzedFamily,
    parts: tuple[str, ...],
    steps: list[int],
    *,
    workers: int,
    progress: bool,
) -> RunAnalysis:
    """`basic_columns` and the family's training evaluators (its progress measure), for a
    family without analyses of its own (no figure data)."""
    evaluators = family.evaluators(run.config)

    def analyze_one(model, step: int) -> BasicCheckpoint:
        row, _ = basic_columns(model, run, family, evaluators)
        return BasicCheckpoint(step=step, row={"step": step, **row})

    return analyze_each(
        run, family, parts, steps, lambda: analyze_one, workers=workers, progress=progress
    )
