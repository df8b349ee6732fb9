"""`interp sweep run`: plan a sweep, keep its manifest, and run its runs on a backend.

The sweep folder:

    SWEEP_DIR/sweep.json       the manifest: the spec, and per run its axes, config, status
                               (pending, running, done, failed), error, attempts, seconds
    SWEEP_DIR/runs/NAME/       an ordinary run folder per run (`interp analyze` works on it)

Only this process writes sweep.json, atomically (`interp.runs.atomic_write_json`), after
every change. `resume=True` finishes a stopped sweep: done runs are skipped; the others
(interrupted, failed, never started) are sent again, and a run folder that holds a complete
checkpoint continues exactly from it (`interp.sweep.worker`). A failed run is recorded with
its error and the others go on; a collapse or a run that never generalizes is a result.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp import runs
from interp.sweep.spec import SpecError, SweepSpec

SWEEP_FILE = "sweep.json"
RUNS_DIR = "runs"
FORMAT = 1


@dataclass
class SweepOutcome:
    sweep_dir: Path
    total: int
    done: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    disk_bytes: int = 0
    seconds: float = 0.0


def read_manifest(sweep_dir: str | Path) -> dict[str, Any]:
    path = Path(sweep_dir) / SWEEP_FILE
    try:
        data = runs.read_json(path)
    except runs.RunError as exc:
        raise SpecError(f"SWEEP_DIR: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise SpecError(f"SWEEP_DIR: {path}: not a sweep manifest (no 'runs' list)")
    return data


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _new_manifest(spec: SweepSpec) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "spec": spec.to_dict(),
        "axes": list(spec.axes),
        "runs": [
            {
                "name": run.name,
                "axes": run.axes,
                "config": run.config.to_dict(),
                "status": "pending",
                "attempts": 0,
            }
            for run in spec.runs
        ],
    }


def prepare(spec: SweepSpec | None, sweep_dir: Path, resume: bool) -> dict[str, Any]:
    """The manifest to run from: a new one, or the stored one with `resume` (checked against
    `spec` when given). Raises SpecError before anything is written."""
    exists = (sweep_dir / SWEEP_FILE).exists()
    if resume:
        if not exists:
            raise SpecError(f"--resume: {sweep_dir} holds no sweep ({SWEEP_FILE} missing)")
        manifest = read_manifest(sweep_dir)
        if spec is not None:
            planned = [r.name for r in spec.runs]
            stored = [r["name"] for r in manifest["runs"]]
            if planned != stored:
                raise SpecError(
                    f"--resume: SPEC plans other runs than the sweep in {sweep_dir} "
                    f"({len(planned)} vs {len(stored)}, e.g. "
                    f"{sorted(set(planned) ^ set(stored))[:2]})"
                    "; resume without SPEC to finish the stored sweep"
                )
        return manifest
    if spec is None:
        raise SpecError("SPEC: required (or --resume to finish the sweep in --out)")
    if exists:
        raise SpecError(f"--out: {sweep_dir} already holds a sweep; --resume finishes it")
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SpecError(f"--out: {sweep_dir} exists and is not empty")
    return _new_manifest(spec)


def run_sweep(
    spec: SweepSpec | str | Path | None,
    sweep_dir: str | Path,
    *,
    workers: int = 0,
    threads: int = 1,
    backend: str = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
    resume: bool = False,
    progress: bool = True,
    log: dict[str, Any] | None = None,
) -> SweepOutcome:
    """Run the sweep `spec` (a TOML file or a parsed `SweepSpec`; None with `resume`) into
    `sweep_dir` (module docstring) with `workers` local processes (0: one per core). Returns
    what happened; a failed run is recorded there and in sweep.json, not raised. `log`
    ({"kind", "dir"}: `interp.sweep.worker`) tracks every run live. This is
    `interp.run_sweep` and `interp sweep run`."""
    if isinstance(spec, (str, Path)):
        from interp.sweep.spec import load_spec

        spec = load_spec(spec)
    workers = workers or default_workers()
    sweep_dir = Path(sweep_dir)
    if backend not in ("local", "ray"):
        raise SpecError(f"--backend: expected local or ray, got {backend!r}")
    if backend == "ray":
        from interp.sweep.ray_backend import require_ray

        require_ray()
    manifest = prepare(spec, sweep_dir, resume)
    (sweep_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(sweep_dir / SWEEP_FILE, manifest)
    return run_entries(
        manifest,
        sweep_dir,
        workers=workers,
        threads=threads,
        backend=backend,
        address=address,
        resources=resources,
        progress=progress,
        log=log,
    )


def run_entries(
    manifest: dict[str, Any],
    sweep_dir: Path,
    *,
    workers: int = 1,
    threads: int = 1,
    backend: str = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
    progress: bool = True,
    log: dict[str, Any] | None = None,
    save=None,
    only: set[str] | None = None,
    pool=None,
) -> SweepOutcome:
    """Run every run of `manifest` (already written to `sweep_dir`) that is not done, keeping
    its entries' status and sweep.json up to date (`save(manifest)` writes it; default: the
    manifest as it is); with `only`, just the runs of those names; `pool`: a kept
    `interp.sweep.local.LocalPool` to run them on (local backend). `run_sweep` runs a planned
    sweep through it; a search (`interp.sweep.search`) calls it once per round with the runs
    it added."""
    save = save or (lambda data: runs.atomic_write_json(sweep_dir / SWEEP_FILE, data))
    entries = {r["name"]: r for r in manifest["runs"]}
    todo = [
        r for r in manifest["runs"] if r["status"] != "done" and (only is None or r["name"] in only)
    ]
    jobs = [
        {"name": r["name"], "run_dir": str(sweep_dir / RUNS_DIR / r["name"]), "config": r["config"]}
        | ({"log": log, "axes": r["axes"]} if log else {})
        for r in todo
    ]
    already = sum(r["status"] == "done" for r in manifest["runs"])
    outcome = SweepOutcome(sweep_dir, len(entries), already)
    outcome.skipped = outcome.done
    start = time.perf_counter()

    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(entries),
        initial=outcome.done,
        unit="run",
        desc="sweep",
        position=0,
        disable=not progress,
        dynamic_ncols=True,
    )
    running: set[str] = set()

    def show() -> None:
        bar.set_postfix(running=len(running), failed=len(outcome.failed), refresh=True)

    def on_start(job: dict[str, Any]) -> None:
        entry = entries[job["name"]]
        entry.update(status="running", attempts=entry.get("attempts", 0) + 1)
        entry.pop("error", None)
        running.add(job["name"])
        save(manifest)
        show()

    def on_done(job: dict[str, Any], result: dict[str, Any]) -> None:
        entry = entries[job["name"]]
        entry.pop("traceback", None)
        entry.update(result)  # a failure keeps its traceback here; the CLI prints one line
        running.discard(job["name"])
        if result["status"] == "done":
            outcome.done += 1
        else:
            outcome.failed.append((job["name"], result.get("error", "")))
        save(manifest)
        bar.update(1)
        show()

    try:
        if backend == "local" and jobs:
            from interp.sweep.local import LocalPool

            pool = pool or LocalPool(workers, threads, progress=progress)
            pool.run(jobs, on_start, on_done)
        elif jobs:
            from interp.sweep.ray_backend import run_on_ray

            run_on_ray(jobs, sweep_dir, address, resources or {}, threads, on_start, on_done)
    finally:
        bar.close()
        outcome.seconds = time.perf_counter() - start
        outcome.disk_bytes = disk_bytes(sweep_dir)
        manifest["disk_bytes"] = outcome.disk_bytes
        save(manifest)
    return outcome


def default_workers() -> int:
    """One worker per core this process may use."""
    return max(1, len(os.sched_getaffinity(0)))
