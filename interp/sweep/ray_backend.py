"""The Ray backend (`--backend ray`, `pip install 'interp[ray]'`): each run is one Ray task.

The tasks run the same `interp.sweep.worker.execute` as the local workers and write the same
run folders, so the sweep folder must be on storage that every Ray node sees (a shared
file system). That is checked before any run starts: the driver writes a marker file and
a Ray task must read it back and answer in a second file; otherwise the sweep stops with an
error that says so. `resources` are the Ray requests of one run (`num_cpus`, default 1;
`num_gpus`, default 0). With `address` None an already initialized Ray (e.g. a test's
`ray.init(num_cpus=2)`) is used, or a local one is started; "auto" joins a running cluster,
"ray://HOST:PORT" a remote one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.sweep.spec import SpecError

MARKER = ".ray-storage-check"


def _answer_marker(path: str, token: str) -> bool:
    marker = Path(path)
    if not marker.exists() or marker.read_text() != token:
        return False
    marker.with_suffix(".seen").write_text(token)
    return True


def _run_job(job: dict[str, Any], threads: int) -> dict[str, Any]:
    from interp.sweep import worker

    worker.warm_up(threads)
    return worker.execute(job)


def require_ray():
    """Ray, or a SpecError saying how to install it (checked before anything is written)."""
    try:
        import ray
    except ImportError:
        raise SpecError("--backend ray: Ray is not installed; pip install 'interp[ray]'") from None
    return ray


def connect(address: str | None):
    ray = require_ray()
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SpecError(f"--address {address!r}: cannot connect to Ray: {exc}") from None
    return ray


def check_shared_storage(ray, sweep_dir: Path) -> None:
    token = uuid.uuid4().hex
    marker = sweep_dir / MARKER
    marker.write_text(token)
    try:
        seen = ray.get(ray.remote(num_cpus=0)(_answer_marker).remote(str(marker.resolve()), token))
        if not seen or marker.with_suffix(".seen").read_text() != token:
            raise FileNotFoundError
    except (FileNotFoundError, OSError):
        raise SpecError(
            f"--out: {sweep_dir} is not on storage the Ray workers see (a worker could not "
            "read and answer a marker there); put the sweep folder on a shared file system"
        ) from None
    finally:
        for path in (marker, marker.with_suffix(".seen")):
            path.unlink(missing_ok=True)


def run_on_ray(
    jobs: list[dict[str, Any]],
    sweep_dir: Path,
    address: str | None,
    resources: dict[str, float],
    threads: int,
    on_start: Callable[[dict[str, Any]], None],
    on_done: Callable[[dict[str, Any], dict[str, Any]], None],
) -> None:
    ray = connect(address)
    check_shared_storage(ray, sweep_dir)
    task = ray.remote(num_cpus=resources.get("num_cpus", 1), num_gpus=resources.get("num_gpus", 0))(
        _run_job
    )
    pending = {}
    for job in jobs:
        on_start(job)
        pending[task.remote(job, threads)] = job
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            result = ray.get(ready[0])
        except Exception as exc:  # noqa: BLE001 (a task that died: that run fails, not the sweep)
            result = {"status": "failed", "error": f"Ray task failed: {type(exc).__name__}: {exc}"}
        on_done(job, result)
