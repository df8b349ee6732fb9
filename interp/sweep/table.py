"""The sweep table: one row per run of a sweep, built from the run folders' metrics alone.

Columns: `run`, `status`, `error`; the sweep's axis values (`seed` among them); `last_step`
and `wall_s`; `final_<metric>` for every scalar metric of the last evaluation (weight norms
per tensor left out); and the *events* the run's task family defines — for each of its
milestones (`circuits.families`: for modular runs `memorized` = train accuracy ≥ 99 %,
`cleanup_start` = test ≥ 50 %, `generalized` = test ≥ 99 %; for the entity families their
own), `<event>_step` and `<event>_censored`. A run that never reached an event in its budget
is **censored**: its `<event>_step` is its last step and `<event>_censored` is True, so it
stays in the table and a fit can tell an observation from a lower bound. Also: the first
step with `circuit_score` ≥ 0.5 (`circuit_step`, censored likewise) and its lead over the
generalization event (`circuit_lead` = generalized − circuit step, when both happened), the
first collapse (`collapse_step`, NaN if none; `n_collapses`), the outcome class, `n_params`
(the model's parameters, embeddings included), and the family's own `sweep_columns` (the
graph-walk family's scaling-study columns).

Outcome classes (after Omnigrok, Liu et al. 2022), from two of the family's milestones,
"fitted" (`fit_milestone`, train ≥ 99 %) and "generalized" (`generalize_milestone`):

- ``confusion``: training never fitted within the budget;
- ``memorization``: fitted, never generalized within the budget;
- ``grokking``: generalized, but late: t_gen − t_fit ≥ `GROKKING_DELAY` × t_fit (by default
  the held-out split lagged by at least as long as fitting took);
- ``comprehension``: generalized with a shorter lag (together with, or soon after, fitting).

All of these depend on the budget (a run stopped early may be "memorization" that would
have grokked) and on the checkpoint schedule (steps are those of checkpoints, so a lag below
the checkpoint spacing reads as 0). A run that grokked and then collapsed keeps its outcome;
its `collapse_step` says what came after.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from interp import runs
from interp.registry import family_of

OUTCOMES = ("comprehension", "grokking", "memorization", "confusion")
GROKKING_DELAY = 1.0
#: Per-tensor columns left out of `final_*` (the total `sum_sq_weights` stays).
_SKIP_PREFIXES = ("sum_sq/",)


def outcome(fit: int | None, gen: int | None, delay: float = GROKKING_DELAY) -> str:
    """The outcome class of a run whose fit/generalization milestones were reached at these
    steps (None: not within the budget); see the module docstring."""
    if fit is None:
        return "confusion" if gen is None else "comprehension"
    if gen is None:
        return "memorization"
    return "grokking" if gen - fit >= delay * max(fit, 1) else "comprehension"


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_row(entry: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """The table row of one run (its manifest `entry` in sweep.json, its folder `run_dir`)."""
    row: dict[str, Any] = {
        "run": entry["name"],
        "status": entry.get("status", "pending"),
        "error": entry.get("error", ""),
        **entry.get("axes", {}),
    }
    try:
        config = runs.read_config(run_dir)
        metrics = runs.read_metrics(run_dir)
    except (runs.RunError, OSError):
        return row  # never started, or failed before its first checkpoint
    if not metrics:
        return row
    last = metrics[-1]
    row["last_step"] = int(last["step"])
    row["wall_s"] = last.get("time_s", math.nan)
    for key, value in last.items():
        if _scalar(value) and key not in ("step", "time_s") and not key.startswith(_SKIP_PREFIXES):
            row[f"final_{key}"] = value
    row["n_params"] = n_params(run_dir)
    row.update(events(config, metrics))
    row.update(family_of(config).sweep_columns(config, metrics))
    return row


def n_params(run_dir: Path) -> int | float:
    """Parameters of the run's model (every tensor of its last checkpoint, embeddings
    included), read from the safetensors header; NaN without a readable checkpoint."""
    from safetensors import safe_open

    try:
        step = runs.read_manifest(run_dir)[-1]["step"]
        path = run_dir / runs.checkpoint_name(step)
        with safe_open(str(path), "pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except (runs.RunError, OSError, IndexError, KeyError, ValueError):
        return math.nan


def events(config, metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The family's events of one run (module docstring), censored at the last step."""
    family = family_of(config)
    last_step = int(metrics[-1]["step"])
    out: dict[str, Any] = {}
    # The collapses the trainer recorded (its rule, on the task's main training split).
    collapses = [
        e for r in metrics for e in r.get("events", ()) or () if e.get("kind") == "collapse"
    ]
    phases = family.phases(metrics)
    reached = {m.name: m.step for m in phases.milestones}
    for name, step in reached.items():
        out[f"{name}_step"] = last_step if step is None else step
        out[f"{name}_censored"] = step is None
    circuit = family.leads(metrics).get("circuit_score>=0.5")
    if any("circuit_score" in r for r in metrics):
        out["circuit_step"] = last_step if circuit is None else circuit
        out["circuit_censored"] = circuit is None
        gen = reached.get(family.generalize_milestone)
        out["circuit_lead"] = gen - circuit if gen is not None and circuit is not None else math.nan
    out["collapse_step"] = collapses[0]["first_step"] if collapses else math.nan
    out["n_collapses"] = len(collapses)
    out["outcome"] = outcome(
        reached.get(family.fit_milestone), reached.get(family.generalize_milestone)
    )
    return out
