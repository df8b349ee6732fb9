"""The text `interp analyze` prints: a human summary of `analysis/summary.json`."""

from __future__ import annotations


def _accuracy_text(info: dict, key: str, value: float) -> str:
    """An accuracy, with its 95 % Wilson interval when its split is small."""
    from interp.metrics import format_accuracy

    return f"{key} {format_accuracy(value, info.get('split_sizes', {}).get(key))}"


def human_summary(info: dict, family_lines: list[str] = ()) -> str:
    """The CLI's summary of `summary.json`; `family_lines` come from the run's task family."""
    lines = [
        f"analyzed {info['n_checkpoints']} checkpoints (steps "
        f"{info['steps'][0]}–{info['steps'][1]}) of {info['run']}",
        *family_lines,
        "final: "
        + ", ".join(
            _accuracy_text(info, k, v) if k.endswith("_acc") else f"{k} {v:.4g}"
            for k, v in info["final"].items()
            if k != "step"
        ),
        "phases: "
        + "; ".join(
            f"{name.replace('_', ' ')} "
            f"{span['start']}–{span['end'] if span['end'] is not None else '…'}"
            for name, span in info["phases"].items()
            if span["start"] is not None
        ),
        "leads: " + ", ".join(f"{k} at step {v}" for k, v in info["leads"].items()),
        f"table: {info['table']}",
    ]
    for event in info.get("collapses", []):
        lines.insert(
            -1,
            f"collapse at step {event['step']}: {event['metric']} {event['value']:.3f} "
            f"(best {event['best']:.3f} at step {event['best_step']}, down since step "
            f"{event['first_step']})",
        )
    if info.get("best"):
        best = info["best"]
        lines.insert(
            -1, f"best checkpoint: step {best['step']} ({best['criterion']} {best['value']:.4g})"
        )
    if info.get("llc"):
        lines.insert(-1, _llc_text(info["llc"]))
    if info.get("figures"):
        lines.append(f"report: {info['figures']}")
    return "\n".join(lines)


def _llc_text(llc: dict) -> str:
    text = (
        f"llc: {llc['estimated']} checkpoints, {llc['steps']}-step chains at eps {llc['eps']:.2g}"
    )
    if llc["unsettled"]:
        text += (
            f"; still climbing at {llc['unsettled']} (llc_drift > llc_std: the estimate reads "
            f"low there), --llc-steps {2 * llc['steps']} runs longer chains"
        )
    return text
