"""Analyze every checkpoint of a run: a streamed map over checkpoints, then files.

`analyze_run(run, parts)` loads one checkpoint at a time into a single model object
(memory stays flat in the number of checkpoints) and returns a `RunAnalysis` holding one
table row per checkpoint plus the small per-checkpoint arrays the figures need.
`write_analysis` turns that into `analysis/table.csv`, `analysis/summary.json` and the
figures. Nothing here prints; the CLI decides what to say.

Key frequencies follow Nanda et al.: the frequencies of the neuron clusters of the final
checkpoint; the restricted and excluded losses of every checkpoint use that one set.
"""

from __future__ import annotations

import csv
import io
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from circuits import fourier
from circuits.activations import FinalActs, final_position_activations
from circuits.attention import attention_columns, attention_summary
from circuits.attribution import attribution_columns, direct_logit_attribution
from circuits.phases import Phases
from circuits.progress import circuit_score
from interp.collapse import CollapseEvent, detect_collapses, rule_for_splits
from interp.metrics import SMALL_SPLIT, per_example_cross_entropy, wilson_interval
from interp.registry import family_of, get_family
from interp.runs import (ANALYSIS_DIR, Run, RunError, atomic_write_bytes, atomic_write_json, no_checkpoints_message,
                         read_best)

TABLE_FILE = "table.csv"
SUMMARY_FILE = "summary.json"
#: The self-contained HTML report (`circuits.viz.report`): every figure, offline.
FIGURES_FILE = "report.html"
BASE_COLUMNS = ["step", "train_acc", "test_acc", "train_loss", "test_loss", "circuit_score"]


def available_parts(run: Run) -> tuple[str, ...]:
    """The analysis parts the run's task family declares (`interp.registry.AnalysisPart`)."""
    return tuple(part.name for part in family_of(run.config).parts)


@dataclass(frozen=True)
class CheckpointAnalysis:
    step: int
    row: dict[str, Any]
    embed_freq_norms: Tensor | None = None
    unembed_freq_norms: Tensor | None = None
    neuron_frequency: Tensor | None = None
    final_attention: Tensor | None = None
    dla_names: list[str] | None = None
    dla: Tensor | None = None


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
        """First steps at which the progress measure and test accuracy reach a level (by family)."""
        return self.family.leads(self.rows)


class _ModularContext:
    """Per-run constants shared by every checkpoint: basis, data, directions."""

    def __init__(self, run: Run):
        cfg = run.config.task
        self.p = cfg.p
        self.operation = cfg.operation
        self.task = run.task
        self.basis = fourier.fourier_basis(cfg.p)
        self.train_index = self.task.splits["train"]
        self.test_index = self.task.splits["test"]
        # train, val (when the run has one) and test, in that order
        self.splits = {name: self.task.splits[name] for name in ("train", "val", "test") if name in self.task.splits}
        self.position_names = ["a", "b", "="]
        self.directions: Tensor | None = None

    def set_key_frequencies(self, keys: list[int]) -> None:
        group = fourier.answer_group(self.operation, self.p)
        self.directions = fourier.answer_directions(self.task.labels, group, keys)


def _accuracy_columns(all_logits: Tensor, ctx: _ModularContext) -> dict[str, float]:
    """Loss (float64 cross-entropy) and accuracy per split, from one pass over every example."""
    labels = ctx.task.labels
    nll, predicted = per_example_cross_entropy(all_logits, labels)
    correct = (predicted == labels).double()
    row: dict[str, float] = {}
    for name, index in ctx.splits.items():
        row[f"{name}_loss"] = float(nll[index].mean())
        row[f"{name}_acc"] = float(correct[index].mean())
    return row


@torch.inference_mode()
def _final_key_frequencies(model, ctx: _ModularContext) -> list[int]:
    acts = final_position_activations(model, ctx.task.tokens, attribution=False)
    clusters = fourier.neuron_clusters(acts.mlp_post.reshape(ctx.p, ctx.p, -1), ctx.basis)
    keys = fourier.key_frequencies_from_clusters(clusters, ctx.p)
    if keys:
        return keys
    # No neuron clusters (e.g. a model that only memorized): fall back to the answer-space set.
    train = ctx.train_index
    return circuit_score(acts.logits[train], ctx.task.labels[train], ctx.operation, ctx.p).key_frequencies


@torch.inference_mode()
def analyze_checkpoint(model, step: int, ctx: _ModularContext, parts: tuple[str, ...]) -> CheckpointAnalysis:
    """All requested analyses of one checkpoint (the model is not modified)."""
    acts = final_position_activations(model, ctx.task.tokens, attribution="attribution" in parts)
    labels = ctx.task.labels
    row: dict[str, Any] = {"step": step, **_accuracy_columns(acts.logits, ctx)}
    logits = acts.logits.double()  # the score and Fourier losses below are float64: convert once
    train = ctx.train_index
    score = circuit_score(logits[train], labels[train], ctx.operation, ctx.p)
    row["circuit_score"] = score.score
    row["train_key_frequencies"] = " ".join(map(str, score.key_frequencies))
    row["sum_sq_weights"] = float(sum(p.detach().double().pow(2).sum() for p in model.parameters()))
    extras: dict[str, Any] = {}
    if "fourier" in parts:
        assert ctx.directions is not None
        losses = fourier.restricted_and_excluded_loss(logits, labels, train, ctx.test_index, ctx.directions)
        row["restricted_loss"] = losses.restricted_loss
        row["excluded_loss"] = losses.excluded_loss
        W_L = model.blocks[-1].mlp.W_out @ model.W_U
        spectrum = fourier.embedding_spectrum(model.W_E, W_L, ctx.basis)
        row["gini_embed"] = spectrum.gini_embed
        row["gini_unembed"] = spectrum.gini_unembed
        clusters = fourier.neuron_clusters(acts.mlp_post.reshape(ctx.p, ctx.p, -1), ctx.basis)
        row["frac_neurons_clustered"] = clusters.frac_clustered
        row["neuron_key_frequencies"] = " ".join(map(str, fourier.key_frequencies_from_clusters(clusters, ctx.p)))
        extras.update(
            embed_freq_norms=spectrum.embed_freq_norms.float(),
            unembed_freq_norms=spectrum.unembed_freq_norms.float(),
            neuron_frequency=clusters.frequency,
        )
    if "attention" in parts:
        summary = attention_summary(acts)
        row.update(attention_columns(summary, ctx.position_names))
        extras["final_attention"] = summary.final_attention.float()
    if "attribution" in parts:
        valid = labels >= 0
        if bool(valid.all()):
            dla = direct_logit_attribution(model, acts, labels)
        else:
            index = torch.nonzero(valid).squeeze(1)
            dla = direct_logit_attribution(model, _subset(acts, index), labels[index])
        row.update(attribution_columns(dla))
        row["dla/total"] = dla.total
        extras.update(dla_names=dla.names, dla=dla.mean.float())
    return CheckpointAnalysis(step=step, row=row, **extras)


def analyze_model(model, run: Run, parts: tuple[str, ...] | None = None, *,
                  key_frequencies: list[int] | None = None, step: int = -1) -> CheckpointAnalysis:
    """Analyze one model on a run's task, e.g. a checkpoint edited in a notebook.

    Key frequencies default to the model's own neuron clusters (as for a run's last checkpoint).
    """
    parts = tuple(parts or available_parts(run))
    ctx = _ModularContext(run)
    keys = _final_key_frequencies(model, ctx) if key_frequencies is None else list(key_frequencies)
    ctx.set_key_frequencies(keys)
    return analyze_checkpoint(model, step, ctx, parts)


def _subset(acts: FinalActs, index: Tensor) -> FinalActs:
    return FinalActs(
        logits=acts.logits[index],
        embed=acts.embed[index],
        z=None if acts.z is None else acts.z[:, index],
        pattern=acts.pattern[:, index],
        mlp_post=acts.mlp_post[index],
        mlp_out=None if acts.mlp_out is None else acts.mlp_out[:, index],
        resid_final=None if acts.resid_final is None else acts.resid_final[index],
    )


def _map_checkpoints(
    run: Run, steps: list[int], make_analyze_one, workers: int = 1, progress: str | None = None
) -> tuple[list[CheckpointAnalysis], list[tuple[str, str]]]:
    """analyze_one(model, step) over every checkpoint that loads (`Run.iter_models`); the others
    are collected as (file, reason) instead of aborting the run.

    `make_analyze_one()` is called once per worker, in this thread (model construction is not
    thread-safe), so each worker gets its own state (e.g. a random-init baseline model).
    With `workers` > 1 the checkpoints are dealt round-robin to that many threads, each with
    its own model object and torch running one intra-op thread: torch releases the GIL inside
    its kernels, and whole checkpoints in parallel scale better than splitting each small op
    over cores. Memory stays flat: `workers` models and activation sets at any time.
    """
    from tqdm.auto import tqdm

    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(steps), desc=progress, unit="ckpt", disable=progress is None, leave=False, dynamic_ncols=True)

    def on_error(item) -> None:
        skipped.append((str(item.path), item.reason))
        bar.update(1)

    def counted(analyze_one):
        def run_one(model, step: int) -> CheckpointAnalysis:
            result = analyze_one(model, step)
            bar.update(1)  # tqdm serializes updates with its own lock
            return result

        return run_one

    workers = max(1, min(workers, len(steps) // 2))
    if workers == 1:
        analyze_one = counted(make_analyze_one())
        try:
            results = [analyze_one(model, step) for step, model in run.iter_models(steps, on_error=on_error)]
        finally:
            bar.close()
    else:
        jobs = [(steps[i::workers], run.new_model(), counted(make_analyze_one())) for i in range(workers)]

        def shard(job) -> list[CheckpointAnalysis]:
            shard_steps, model, analyze_one = job
            return [analyze_one(m, step) for step, m in run.iter_models(shard_steps, on_error=on_error, model=model)]

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="analyze") as pool:
                results = sorted(chain.from_iterable(pool.map(shard, jobs)), key=lambda r: r.step)
        finally:
            torch.set_num_threads(threads)
            bar.close()
        skipped.sort()
    if not results:
        raise RunError(f"{run.path}: none of the {len(steps)} checkpoints could be loaded")
    return results, skipped


def default_workers() -> int:
    """Checkpoints analyzed in parallel: one per torch thread (`--threads`), i.e. per core."""
    return max(1, torch.get_num_threads())


def analyze_run(run: Run, parts: tuple[str, ...] | None = None, steps: list[int] | None = None, *,
                workers: int | None = None, progress: bool = False) -> RunAnalysis:
    """Analyze the run's complete checkpoints; damaged ones are skipped and reported.

    `parts` are the run's family's analysis parts (default: all of them). `workers`
    checkpoints are analyzed in parallel (default: `default_workers()`, one per torch
    thread), each worker with its own model objects. `progress` shows a bar over the
    checkpoints (done/total, rate, ETA, and which parts) on stderr.
    """
    family = family_of(run.config)
    parts = tuple(parts or available_parts(run))
    unknown = set(parts) - set(available_parts(run))
    if unknown:
        from interp.config import ConfigError

        raise ConfigError(f"analysis parts {sorted(unknown)} do not apply to task kind {run.config.task.kind!r}; "
                          f"its parts: {', '.join(available_parts(run)) or 'none'}")
    steps = list(run.steps if steps is None else steps)
    if not steps:
        raise RunError(no_checkpoints_message(run.path))
    workers = default_workers() if workers is None else workers
    return family.analyze(run, parts, steps, workers=workers, progress=progress)


def _label(parts: tuple[str, ...], progress: bool) -> str | None:
    return f"analyze {'+'.join(parts) or 'accuracy'}" if progress else None


def analyze_modular_run(run: Run, parts: tuple[str, ...], steps: list[int], *, workers: int,
                        progress: bool) -> RunAnalysis:
    """The modular family's analysis: key frequencies from the last checkpoint, then every
    checkpoint's accuracy, circuit score and requested parts (`analyze_checkpoint`)."""
    ctx = _ModularContext(run)
    # Key frequencies come from the last checkpoint that loads (damage is reported below).
    keys: list[int] = []
    for _step, model in run.iter_models(list(reversed(steps)), on_error=lambda s: None):
        keys = _final_key_frequencies(model, ctx)
        break
    ctx.set_key_frequencies(keys)
    results, skipped = _map_checkpoints(
        run, steps, lambda: lambda model, step: analyze_checkpoint(model, step, ctx, parts), workers=workers,
        progress=_label(parts, progress),
    )
    return RunAnalysis(
        run_dir=run.path,
        parts=parts,
        checkpoints=results,
        key_frequencies=keys,
        skipped=skipped,
        p=ctx.p,
        kind=run.config.task.kind,
        **_run_facts(run, results),
    )


def _run_facts(run: Run, results: list[CheckpointAnalysis]) -> dict[str, Any]:
    """Collapse events (the task's rule on this table), split sizes and the `best` pointer."""
    task = run.task
    sizes = {f"{name}_acc": len(index) for name, index in task.splits.items()}
    sizes["train_acc"] = len(task.train_index)
    if "test_acc" not in sizes:  # the base test columns are the first held-out split
        sizes["test_acc"] = len(task.splits[task.held_out_splits[0]])
    rule = rule_for_splits(task.train_splits)
    collapses = detect_collapses([r.row for r in results], rule)
    phases = family_of(run.config).phases([r.row for r in results], collapses)
    return {"collapses": collapses, "phases": phases, "split_sizes": sizes, "best": read_best(run.path)}


def analyze_entity_run(run: Run, parts: tuple[str, ...], steps: list[int], *, workers: int,
                       progress: bool) -> RunAnalysis:
    """The entity families' analysis (`circuits.entity.analyze_entity_checkpoint`) of every checkpoint."""
    from circuits.entity import analyze_entity_checkpoint, random_init_model

    task = run.task

    def make_analyze_one():
        # The probes' random-init baseline: one model per worker (hooks are per model object).
        random_model = random_init_model(run.config) if "probes" in parts else None

        def analyze_one(model, step: int):
            return analyze_entity_checkpoint(model, task, run.config, parts, random_model=random_model, step=step)

        return analyze_one

    return analyze_each(run, parts, steps, make_analyze_one, workers=workers, progress=progress)


def analyze_each(run: Run, parts: tuple[str, ...], steps: list[int], make_analyze_one, *, workers: int = 1,
                 progress: bool = False) -> RunAnalysis:
    """The `RunAnalysis` of `analyze_one(model, step)` mapped over the checkpoints (damaged ones
    skipped and reported), with the family's phases, collapses, split sizes and `best`.

    `make_analyze_one()` is called once per worker and returns `analyze_one`, whose result is
    a frozen per-checkpoint object with `.step` and `.row` (its table columns). This is what
    a family's `analyze` needs to do beyond computing one checkpoint."""
    results, skipped = _map_checkpoints(run, steps, make_analyze_one, workers=workers,
                                        progress=_label(parts, progress))
    return RunAnalysis(run_dir=run.path, parts=parts, checkpoints=results, key_frequencies=[], skipped=skipped,
                       kind=run.config.task.kind, **_run_facts(run, results))


def basic_columns(model, run: Run) -> tuple[dict[str, Any], dict[str, tuple[Tensor, Tensor]]]:
    """Loss and accuracy on every split plus the `train`/`test` base columns (the last training
    split and the first held-out one, when no split has those names), and the logits by split."""
    from interp.metrics import evaluate

    task = run.task
    row, by_split = evaluate(model, task, torch.device("cpu"), family_of(run.config).forward)
    for base, split in (("train", task.train_splits[-1]), ("test", task.held_out_splits[0])):
        row.setdefault(f"{base}_acc", row[f"{split}_acc"])
        row.setdefault(f"{base}_loss", row[f"{split}_loss"])
    return row, by_split


def analyze_basic_run(run: Run, parts: tuple[str, ...], steps: list[int], *, workers: int,
                      progress: bool) -> RunAnalysis:
    """`basic_columns` and the family's training evaluators (its progress measure), for a
    family without analyses of its own."""
    task = run.task
    evaluators = family_of(run.config).evaluators(run.config)

    def analyze_one(model, step: int) -> CheckpointAnalysis:
        row, by_split = basic_columns(model, run)
        with torch.inference_mode():
            for evaluator in evaluators:
                row.update(evaluator(model, task, by_split))
        return CheckpointAnalysis(step=step, row={"step": step, **row})

    return analyze_each(run, parts, steps, lambda: analyze_one, workers=workers, progress=progress)


def _format(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return value


def write_table(rows: list[dict[str, Any]], path: Path) -> None:
    columns = BASE_COLUMNS + sorted({k for row in rows for k in row} - set(BASE_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _format(v) for k, v in row.items()})
    atomic_write_bytes(path, buffer.getvalue().encode())


def _intervals(result: RunAnalysis, row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{column: {n, low, high}} for the accuracies of `row` measured on small splits."""
    out = {}
    for column, value in row.items():
        if column.endswith("_acc") and isinstance(value, float) and math.isfinite(value):
            interval = result.interval(column, value)
            if interval is not None:
                out[column] = {"n": result.split_sizes[column], "low": interval[0], "high": interval[1]}
    return out


def summary(result: RunAnalysis, out_dir: Path) -> dict[str, Any]:
    last = result.checkpoints[-1].row
    return {
        "run": str(result.run_dir),
        "parts": list(result.parts),
        "n_checkpoints": len(result.checkpoints),
        "steps": [result.steps[0], result.steps[-1]],
        "key_frequencies": result.key_frequencies,
        "phases": result.phases.to_dict(),
        "leads": result.leads(),
        "kind": result.kind,
        "final": {k: last[k] for k in BASE_COLUMNS if k in last},
        "final_splits": {k: v for k, v in last.items() if k.endswith("_acc")},
        "final_intervals": _intervals(result, last),
        "split_sizes": result.split_sizes,
        "collapses": [e.to_dict() for e in result.collapses],
        "best": result.best,
        "skipped": [{"step": _step_of(f), "file": f, "reason": r} for f, r in result.skipped],
        "table": str(out_dir / TABLE_FILE),
        "figures": str(out_dir / FIGURES_FILE),
    }


def _step_of(file: str) -> int | None:
    stem = Path(file).stem
    return int(stem.removeprefix("step_")) if stem.startswith("step_") and stem[5:].isdigit() else None


def write_analysis(
result: RunAnalysis, out_dir: Path | None = None, *, figures: bool = True) -> dict[str, Any]:
    """Write the table, the summary and the figures; returns the summary."""
    out_dir = Path(out_dir) if out_dir is not None else result.run_dir / ANALYSIS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(result.rows, out_dir / TABLE_FILE)
    info = summary(result, out_dir)
    if figures:
        from circuits.viz.report import write_report

        write_report(result, out_dir / FIGURES_FILE)
    else:
        info["figures"] = None
    atomic_write_json(out_dir / SUMMARY_FILE, info)
    return info


def dumps(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, sort_keys=True)
