"""The project's cache folder: `$INTERP_CACHE_DIR`, else `$XDG_CACHE_HOME/interp`, else
`~/.cache/interp`. Every cache under it (imports, count-learner replays, teacher walks) holds
only what can be recomputed from its key, so deleting it loses nothing but time."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "INTERP_CACHE_DIR"


def cache_dir(name: str) -> Path:
    """The cache folder `name` under the root (not created here)."""
    root = os.environ.get(CACHE_ENV) or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "interp"
    )
    return Path(root) / name
