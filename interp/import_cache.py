"""`interp analyze SRC --task …` on checkpoints that are not a run folder yet: import them once
(`interp.importing`) and reuse the import while the source is unchanged.

Where: `--out` if given, else the cache, `$INTERP_CACHE_DIR/imports/<name>-<key>` (else
`$XDG_CACHE_HOME/interp/imports/…`, else `~/.cache/interp/imports/…`: the same root as the
project's other caches). The key is a hash of what the import reads: the source's resolved
path and, for every file it reads, its name, size and modification time (not its contents, so
checking a 500 MB file costs nothing), the task spec's and TL config's contents, `--every`, and
`IMPORT_VERSION`. It is recorded in the run's import.json, and a folder whose recorded key
matches is reused as it is. A changed source gets a new key and so a new folder; old ones are
left for the user to delete.

Nothing here imports torch: deciding whether SRC needs an import is instant.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

from interp.cache import cache_dir

#: Bump when the import's output changes for the same input (old cache entries are not reused).
IMPORT_VERSION = 1
IMPORTS_DIR = "imports"
#: Mirrors interp.importing (kept here so this module needs no torch).
_SUFFIXES = (".safetensors", ".pt", ".pth")
_CONFIG_NAMES = ("config.json", "cfg.json", "tl_config.json")
_IMPORT_FILE, _MANIFEST, _CHECKPOINTS = "import.json", "manifest.json", "checkpoints"


def cache_root() -> Path:
    return cache_dir(IMPORTS_DIR)


def is_import_source(path: Path) -> bool:
    """A single checkpoint file, or a folder of checkpoint files that is not a run folder of
    this project (those keep their weights under `checkpoints/` beside a manifest)."""
    if path.is_file():
        return path.suffix in _SUFFIXES
    if not path.is_dir() or (path / _MANIFEST).exists() or (path / _CHECKPOINTS).is_dir():
        return False
    return any(child.suffix in _SUFFIXES and child.is_file() for child in path.iterdir())


def _stat(path: Path) -> list[Any]:
    st = path.stat()
    return [path.name, st.st_size, st.st_mtime_ns]


def source_key(
    src: Path, task: Path | dict, tl_config: Path | dict | None = None, every: int | None = None
) -> str:
    """The hash that names an import of `src` (module docstring)."""
    if src.is_file():
        files = [_stat(src)]
    else:
        files = [
            _stat(f)
            for f in sorted(src.iterdir())
            if f.is_file() and (f.suffix in _SUFFIXES or f.name in _CONFIG_NAMES)
        ]

    def content(item: Path | dict | None) -> str | None:
        if item is None or isinstance(item, dict):
            return json.dumps(item, sort_keys=True)
        return item.read_bytes().hex() if item.is_file() else f"missing:{item}"

    key = {
        "version": IMPORT_VERSION,
        "source": str(src.resolve()),
        "files": files,
        "task": content(task),
        "tl_config": content(tl_config),
        "every": every,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _recorded_key(run_dir: Path) -> str | None:
    try:
        if not (run_dir / _MANIFEST).is_file():
            return None
        return json.loads((run_dir / _IMPORT_FILE).read_text(encoding="utf-8")).get("source_key")
    except (OSError, ValueError, AttributeError):
        return None


def cached_import(
    src: Path,
    task: Path | dict,
    *,
    out: Path | None = None,
    tl_config: Path | dict | None = None,
    every: int | None = None,
) -> tuple[Path, bool]:
    """(run folder, whether an earlier import was reused) for checkpoints at `src`."""
    from interp.importing import ImportCheckpointError, import_tl_checkpoints

    key = source_key(src, task, tl_config, every)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.stem if src.is_file() else src.resolve().name)
    target = out if out is not None else cache_root() / f"{name}-{key[:16]}"
    if _recorded_key(target) == key:
        return target, True
    if out is None and target.exists():
        shutil.rmtree(target)  # ours, and incomplete or from an older version: redo it
    elif (target / _IMPORT_FILE).is_file():
        raise ImportCheckpointError(
            f"{target}: holds an import of another source or task spec, or of this source before "
            "it changed; choose another folder or delete this one",
            argument="out",
        )
    try:
        import_tl_checkpoints(
            src, target, task, tl_config=tl_config, every=every, record={"source_key": key}
        )
    except OSError:
        if _recorded_key(target) == key:  # another process imported the same source meanwhile
            return target, True
        raise
    return target, False
