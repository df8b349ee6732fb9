"""What training prints: the progress bar, its live metrics and warnings that do not break it."""

from __future__ import annotations

from typing import Any


def warn(message: str) -> None:
    """A line on stderr that does not break a running progress bar."""
    import sys

    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


def postfix(row: dict[str, Any], train_loss_key: str, test_acc_key: str) -> dict[str, str]:
    """Live metrics under the split names (train_loss/test_acc, or e.g.
    train_inferred_loss/test_id_acc)."""
    out = {
        train_loss_key: f"{row.get(train_loss_key, float('nan')):.3g}",
        test_acc_key: f"{row.get(test_acc_key, float('nan')):.3f}",
    }
    if "circuit_score" in row:
        out["circuit"] = f"{row['circuit_score']:.2f}"
    return out


#: Extra tqdm options for the bars of this process: a sweep worker sets its line (`position`)
#: and the run's name (`desc`), so that the bars of parallel runs stack under the sweep's.
bar_options: dict[str, Any] = {}


def progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(
        **bar_options,
        total=total,
        initial=initial,
        disable=not enabled,
        unit="step",
        dynamic_ncols=True,
        leave=False,
    )
