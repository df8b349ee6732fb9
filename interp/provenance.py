"""Where and with what a run was trained: `RUN_DIR/provenance.json`.

Bit-identity and cross-machine comparisons need more than the config: float paths differ
across CPUs, thread counts and library versions. Every process that writes a run (a fresh
`interp train`, each `--resume`, `interp import`) appends one session record:

    {"sessions": [{"started_at_step": 0, "interp": "0.1.0", "git_commit": "f368f2f…",
                   "git_dirty": false, "python": "3.11.7", "torch": "2.13.0+cpu",
                   "transformer_lens": "4.3.0", "numpy": "…", "platform": "Linux-…",
                   "cpu": "AMD EPYC …", "device": "cpu", "gpu": null, "torch_threads": 1,
                   "seeds": {"model": 999, "train": 0, "split": 598},
                   "time": "2026-12-01T14:46:00Z"}]}

Versions are read from package metadata (nothing heavy is imported), the commit from git
when the package runs from a checkout.
"""

from __future__ import annotations

import json
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    source = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "-C", str(source), *args], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect(config, device: str = "cpu", step: int = 0) -> dict[str, Any]:
    """One session record for a process about to write a run of `config` on `device`."""
    import torch

    commit = _git("rev-parse", "HEAD")
    gpu = (
        torch.cuda.get_device_name(0)
        if str(device).startswith("cuda") and torch.cuda.is_available()
        else None
    )
    return {
        "started_at_step": step,
        "interp": _version("interp"),
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no"))
        if commit
        else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformer_lens": _version("transformer-lens"),
        "numpy": _version("numpy"),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "device": str(device),
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        "seeds": {
            "model": config.model.seed,
            "train": config.train.seed,
            "split": config.task.split_seed,
        },
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def read(run_dir: Path) -> list[dict[str, Any]]:
    """The run's session records (empty for runs written before provenance existed)."""
    path = Path(run_dir) / PROVENANCE_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    sessions = data.get("sessions") if isinstance(data, dict) else None
    return sessions if isinstance(sessions, list) else []


def record(run_dir: Path, session: dict[str, Any]) -> None:
    """Append a session record (atomically)."""
    from interp.runs import atomic_write_json

    atomic_write_json(Path(run_dir) / PROVENANCE_FILE, {"sessions": [*read(run_dir), session]})
