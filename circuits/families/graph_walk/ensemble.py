"""K graph-walk models as one predictor, measured like a single run (`interp ensemble`).

The members' next-node distributions on the same test walks are combined two ways, both
computed:

- **logits** (the default; the rule the source study's summary reports, ANCHORS §5): the
  mean of the members' log-probabilities, renormalized, i.e. a normalized geometric mean of
  their distributions (averaging raw logits gives the same distribution: each member's
  log-normalizer is a constant per position);
- **probs**: the mean of the members' probabilities (a mixture).

Each is measured with the family's paired excess estimator over H
(`limits.paired_excess`: mean over test walks of log P(next | current) − log q, with its
standard error), the per-node KL of `analysis.learned_transitions`, and beside the add-½ count
learners trained on the same tokens as the members (the corpus once for a fixed corpus; the
distinct token streams of fresh-walk members added up). The difference probs − logits is the
mean of the per-walk differences with its own (paired) standard error.

Members must share the task (kind, graph, vocabulary, walks): otherwise `EnsembleMismatch`
names the first difference (exit 2 on the command line). They may differ in anything else
(width, seeds, learning rate, weight decay, steps).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from interp.config_base import ConfigError

COMBINATIONS = ("logits", "probs")
SUMMARY_FILE = "ensemble.json"
REPORT_FILE = "ensemble.md"


def combined_log_probs(log_probs: torch.Tensor, rule: str) -> torch.Tensor:
    """The ensemble's log-probabilities from its members' ([member, ..., vocab]) by `rule`
    (module docstring): "logits", the mean log-probability renormalized; "probs", the log of
    the mean probability."""
    if rule == "logits":
        return torch.log_softmax(log_probs.mean(0), -1)
    return torch.logsumexp(log_probs, 0) - math.log(len(log_probs))


class EnsembleMismatch(ConfigError):
    """Members that cannot be one predictor (a different task, graph or vocabulary)."""


@dataclass(frozen=True)
class Measured:
    """The paired excess over H (nats/token) with its standard error, and the per-node KL."""

    excess_loss: float
    excess_loss_se: float
    kl_node_mean: float
    kl_node_max: float


@dataclass(frozen=True)
class EnsembleResult:
    members: list[dict[str, Any]]
    combined: dict[str, Measured]
    default: str
    #: probs − logits: mean of the per-walk differences and its standard error
    difference: dict[str, float]
    entropy_rate: float
    test_walks: int
    test_tokens: int
    count_transitions: int
    count_excess_graph: float
    count_excess_all: float
    kl_per_node: dict[str, list[float]] = field(repr=False, default_factory=dict)

    @property
    def k(self) -> int:
        return len(self.members)

    @property
    def excess_loss(self) -> float:
        """The default combination's excess over H."""
        return self.combined[self.default].excess_loss

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["k"] = self.k
        out["excess_loss"] = self.excess_loss
        out["ratio_to_count_graph"] = self.excess_loss / self.count_excess_graph
        return out


def parse_member(spec: str | Path) -> tuple[Path, str | None]:
    """("RUN_DIR", None | "STEP" | "best") from "RUN_DIR[@STEP|@best]"."""
    text = str(spec)
    path, at, step = text.rpartition("@")
    if not at or not (step.isdigit() or step == "best"):
        return Path(text), None
    return Path(path), step


def member_step(run, which: str | None) -> int:
    """The checkpoint step "RUN[@STEP|@best]" names (None: the last)."""
    from interp.runs import RunError, read_best

    if which is None:
        return run.steps[-1]
    if which == "best":
        best = read_best(run.path)
        if best is None:
            raise RunError(f"{run.path}@best: the run has no best checkpoint")
        return int(best["step"])
    if int(which) not in run.steps:
        raise RunError(f"{run.path}@{which}: no complete checkpoint there; have {run.steps[-3:]}")
    return int(which)


def check_members(runs: Sequence[Any]) -> None:
    """Raise `EnsembleMismatch` naming the first way the members' tasks differ."""
    from circuits.families.graph_walk.task import data_differences, data_fields, walk_graph

    first = runs[0]
    base = data_fields(first.config.task)
    if base["kind"] != "graph_walk":
        raise EnsembleMismatch(f"ensemble: {first.path}: a {base['kind']!r} run, not a graph walk")
    for run in runs[1:]:
        task = data_fields(run.config.task)
        where = f"({first.path}) vs"
        if task["kind"] != base["kind"]:
            raise EnsembleMismatch(
                f"ensemble: members of different tasks: task.kind {base['kind']!r} {where} "
                f"{task['kind']!r} ({run.path})"
            )
        vocab = (first.config.task.d_vocab, run.config.task.d_vocab)
        if vocab[0] != vocab[1]:
            raise EnsembleMismatch(
                f"ensemble: vocabularies differ: {vocab[0]} tokens {where} {vocab[1]} ({run.path})"
            )
        differing = data_differences(first.config.task, run.config.task)
        graphs = walk_graph(first.config.task), walk_graph(run.config.task)
        if not np.array_equal(graphs[0].transition, graphs[1].transition):
            name = differing[0] if differing else "graph"
            raise EnsembleMismatch(
                f"ensemble: graphs differ (task.{name}: {base.get(name)!r} {where} "
                f"{task.get(name)!r} ({run.path}))"
            )
        if differing:
            name = differing[0]
            raise EnsembleMismatch(
                f"ensemble: members differ in task.{name}: {base[name]!r} {where} "
                f"{task[name]!r} ({run.path}); they must share the walks and the training data"
            )


@torch.inference_mode()
def member_log_probs(run, step: int, tokens: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """[walk × pos, vocab] float64 log-probabilities of one member on `tokens`."""
    from interp.registry import family_of

    family = family_of(run.config)
    model = run.model_at(step)
    model.eval()
    chunks = [
        torch.log_softmax(family.forward(model, tokens[i : i + batch]).double(), -1)
        for i in range(0, len(tokens), batch)
    ]
    return torch.cat(chunks)


def _measure(log_q, tokens, labels, log_p, transition) -> tuple[Measured, Any, np.ndarray]:
    from circuits.families.graph_walk.analysis import learned_transitions
    from circuits.families.graph_walk.limits import paired_excess

    mean, se, per_walk = paired_excess(log_q, tokens, labels, log_p)
    kl, _ = learned_transitions(log_q, tokens.reshape(-1), transition)
    measured = Measured(mean, se, float(np.nanmean(kl)), float(np.nanmax(kl)))
    return measured, per_walk, kl


def training_counts(runs: Sequence[Any], steps: Sequence[int]) -> np.ndarray:
    """The transitions the members trained on, each distinct token stream once (a fixed
    corpus is shared; fresh walks of different seeds are different streams)."""
    from circuits.families.graph_walk.limits import trained_counts

    distinct: list[np.ndarray] = []
    for run, step in zip(runs, steps):
        counts = trained_counts(run.config, step)
        if not any(np.array_equal(counts, seen) for seen in distinct):
            distinct.append(counts)
    return np.sum(distinct, axis=0)


def evaluate_ensemble(
    members: Sequence[str | Path], *, default: str = "logits", batch: int = 64
) -> EnsembleResult:
    """The ensemble of `members` ("RUN_DIR", "RUN_DIR@STEP" or "RUN_DIR@best"; default the
    last checkpoint) on the first member's test walks (module docstring)."""
    from circuits.families.graph_walk.limits import kt_excess_loss
    from circuits.families.graph_walk.task import walk_graph
    from interp.runs import load_run

    if not members:
        raise EnsembleMismatch("ensemble: no members given")
    if default not in COMBINATIONS:
        raise EnsembleMismatch(f"--combine: expected one of {COMBINATIONS}, got {default!r}")
    parsed = [parse_member(m) for m in members]
    runs = [load_run(path) for path, _ in parsed]
    check_members(runs)
    steps = [member_step(run, which) for run, (_, which) in zip(runs, parsed)]
    task = runs[0].task
    tokens, labels = task.split("test")
    labels = labels.reshape(-1)
    graph = walk_graph(runs[0].config.task)
    transition = graph.transition
    log_p = torch.log(torch.as_tensor(transition).clamp_min(1e-300))

    sum_log, sum_prob, rows = None, None, []
    for run, step in zip(runs, steps):
        log_q = member_log_probs(run, step, tokens, batch)
        measured, _, _ = _measure(log_q, tokens, labels, log_p, transition)
        rows.append({"run": str(run.path), "step": step, **asdict(measured)})
        sum_log = log_q if sum_log is None else sum_log + log_q
        sum_prob = log_q.exp() if sum_prob is None else sum_prob + log_q.exp()
    k = len(runs)
    # `combined_log_probs`' two rules from running sums: no member's log-probabilities kept
    combos = {
        "logits": torch.log_softmax(sum_log / k, -1),
        "probs": torch.log(sum_prob / k),
    }
    combined, per_walk, kl_per_node = {}, {}, {}
    for name, log_q in combos.items():
        combined[name], per_walk[name], kl = _measure(log_q, tokens, labels, log_p, transition)
        kl_per_node[name] = [None if np.isnan(v) else float(v) for v in kl]
    diff = per_walk["probs"] - per_walk["logits"]
    counts = training_counts(runs, steps)
    return EnsembleResult(
        members=rows,
        combined=combined,
        default=default,
        difference={"mean": float(diff.mean()), "se": float(diff.std() / diff.numel() ** 0.5)},
        entropy_rate=graph.entropy_rate(),
        test_walks=int(tokens.shape[0]),
        test_tokens=int(tokens.numel()),
        count_transitions=int(counts.sum()),
        count_excess_graph=kt_excess_loss(graph, counts, True),
        count_excess_all=kt_excess_loss(graph, counts, False),
        kl_per_node=kl_per_node,
    )


def summary_lines(result: EnsembleResult) -> list[str]:
    """The command line's summary (and the report's body)."""
    lines = [
        f"ensemble of {result.k} on {result.test_walks} test walks ({result.test_tokens:,} "
        f"tokens), H {result.entropy_rate:.5f} nats"
    ]
    for row in result.members:
        lines.append(
            f"  member {row['run']}@{row['step']}: excess {row['excess_loss']:.5g} "
            f"± {row['excess_loss_se']:.2g}"
        )
    for name in COMBINATIONS:
        m = result.combined[name]
        mark = " (default)" if name == result.default else ""
        lines.append(
            f"  averaging {name}{mark}: excess {m.excess_loss:.5g} ± {m.excess_loss_se:.2g}, "
            f"per-node KL mean {m.kl_node_mean:.4g} max {m.kl_node_max:.4g}"
        )
    d = result.difference
    lines.append(f"  probs − logits: {d['mean']:+.3g} ± {d['se']:.2g} nats (paired)")
    lines.append(
        f"  count learners on the same {result.count_transitions:,} transitions: "
        f"{result.count_excess_graph:.4g} knowing the neighbours, {result.count_excess_all:.4g} "
        f"over all nodes; ensemble / neighbour-aware = "
        f"{result.excess_loss / result.count_excess_graph:.3g}x"
    )
    return lines


def write_ensemble(result: EnsembleResult, out: str | Path) -> tuple[Path, Path]:
    """`out`/ensemble.json (everything, per-node KL included) and `out`/ensemble.md."""
    from interp.runs import atomic_write_bytes, atomic_write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / SUMMARY_FILE, result.to_dict())
    table = [
        "| predictor | excess over H (nats) | SE | per-node KL mean |",
        "|---|---|---|---|",
        *(
            f"| {Path(r['run']).name}@{r['step']} | {r['excess_loss']:.5g} | "
            f"{r['excess_loss_se']:.2g} | {r['kl_node_mean']:.4g} |"
            for r in result.members
        ),
        *(
            f"| ensemble, averaging {name} | {m.excess_loss:.5g} | {m.excess_loss_se:.2g} | "
            f"{m.kl_node_mean:.4g} |"
            for name, m in result.combined.items()
        ),
        f"| add-½ counts, knowing the neighbours | {result.count_excess_graph:.5g} | exact | |",
        f"| add-½ counts, over all nodes | {result.count_excess_all:.5g} | exact | |",
    ]
    text = "# Ensemble\n\n" + "\n".join(summary_lines(result)) + "\n\n" + "\n".join(table) + "\n"
    atomic_write_bytes(out / REPORT_FILE, text.encode())
    return out / SUMMARY_FILE, out / REPORT_FILE


def load_summary(out: str | Path) -> dict[str, Any]:
    return json.loads((Path(out) / SUMMARY_FILE).read_text())
