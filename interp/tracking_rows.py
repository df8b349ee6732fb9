"""What every tracker sends, backend-free (`interp.tracking`): a metrics row's scalars and
events, a config flattened to hyperparameters, and the optional backend's import."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from interp.collapse import CollapseEvent
from interp.errors import MissingExtra

#: What `--log` accepts; each is an extra of the same name (`pip install 'interp[wandb]'`).
LOG_KINDS = ("tensorboard", "wandb", "mlflow")
EVENTS_TAG = "events"

Scalar = bool | int | float | str
Hparams = Callable[[], Mapping[str, Scalar]]


def require(kind: str):
    """The backend's module, or MissingExtra naming the pip install that provides it."""
    try:
        if kind == "tensorboard":
            import tensorboard  # noqa: F401 (torch.utils.tensorboard may be imported already)
            from torch.utils import tensorboard as module
        elif kind == "wandb":
            import wandb as module
        elif kind == "mlflow":
            import mlflow as module
        else:
            raise ValueError(f"log: expected one of {', '.join(LOG_KINDS)}, got {kind!r}")
    except ImportError:
        raise MissingExtra(
            f"--log {kind}: {kind} is not installed; pip install 'interp[{kind}]'"
        ) from None
    return module


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Scalar]:
    """A nested config as `section.field` -> value; values that are not numbers, strings or
    booleans (None, lists) as their JSON text, which every backend accepts."""
    flat: dict[str, Scalar] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """Every number of a metrics row but its step."""
    return {
        key: float(value)
        for key, value in row.items()
        if key != "step" and isinstance(value, (int, float))
    }


def event_texts(row: Mapping[str, Any]) -> list[str]:
    """A row's events (collapses, `interp.collapse`) in words."""
    texts = []
    for event in row.get("events", ()):
        fields = {k: v for k, v in event.items() if k != "kind"}
        if event.get("kind") == "collapse":
            texts.append(CollapseEvent(**fields).describe())
        else:
            texts.append(json.dumps(event, sort_keys=True))
    return texts
