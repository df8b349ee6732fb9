"""`interp sweep search SPEC --out DIR`: a neighbour search (`interp.sweep.search`) run round by
round on the sweep runner.

    SWEEP_DIR/sweep.json    the sweep's manifest, as for `interp sweep run`: the spec, the axes
                            and every trial as an ordinary run entry (`search`: its group and
                            role, "trial" or "confirm"), plus `search.groups` (each group's grid
                            values and resolved base config, so a resume needs no base file)
    SWEEP_DIR/search.json   per group: status, the accepted point and its value, the
                            certificate (every one-step neighbour's value), the path walked,
                            and the trial counts
    SWEEP_DIR/runs/NAME/    one run folder per trial (`interp analyze` and the table work)

Each round plans every group (`interp.sweep.search.plan` over the finished trials), adds the
runs the walks need next and runs them with `interp.sweep.runner.run_entries` (local workers
or Ray); it stops when no walk needs anything. A trial that fails counts as the worst value.
`resume=True` first finishes the runs the stored manifest left unfinished (failed ones are
retried), then re-plans from the start points: finished trials are read back, never re-run.
With `confirm_seeds`, each accepted point is run again with those seeds (for intervals);
those runs never enter the certificate.
"""

from __future__ import annotations

import math
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp import runs
from interp.config import RunConfig
from interp.sweep.runner import FORMAT, RUNS_DIR, SWEEP_FILE, read_manifest, run_entries
from interp.sweep.search import Group, Plan, Point, SearchSpec, neighbours, parse_search, plan
from interp.sweep.spec import PlannedRun, SpecError

SEARCH_FILE = "search.json"


@dataclass
class SearchOutcome:
    sweep_dir: Path
    groups: list[dict[str, Any]]
    runs: int = 0
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    rounds: int = 0
    seconds: float = 0.0


def _load(spec_path: str | Path) -> dict[str, Any]:
    path = Path(spec_path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"SPEC: {path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"SPEC: {path}: not valid TOML: {exc}") from None


def prepare_search(
    spec_path: str | Path | None, sweep_dir: Path, resume: bool
) -> tuple[SearchSpec, dict[str, Any]]:
    """The search and its manifest: new, or the stored one with `resume` (then SPEC, when
    given, must be the same spec). Raises SpecError before anything is written."""
    if resume:
        if not (sweep_dir / SWEEP_FILE).exists():
            raise SpecError(f"--resume: {sweep_dir} holds no sweep ({SWEEP_FILE} missing)")
        manifest = read_manifest(sweep_dir)
        if "search" not in manifest:
            raise SpecError(f"--resume: {sweep_dir} holds a plain sweep; interp sweep run --resume")
        if spec_path is not None and _load(spec_path) != manifest["spec"]:
            raise SpecError(
                f"--resume: SPEC differs from the search in {sweep_dir}; resume without SPEC"
            )
        stored = manifest["search"]
        groups = tuple(
            Group(dict(g["axes"]), RunConfig.from_dict(g["config"])) for g in stored["groups"]
        )
        spec = parse_search(manifest["spec"], groups=groups, order=stored["axis_order"])
        return spec, manifest
    if spec_path is None:
        raise SpecError("SPEC: required (or --resume to finish the search in --out)")
    raw = _load(spec_path)
    spec = parse_search(raw, Path(spec_path).parent)
    if (sweep_dir / SWEEP_FILE).exists():
        raise SpecError(f"--out: {sweep_dir} already holds a sweep; --resume finishes it")
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise SpecError(f"--out: {sweep_dir} exists and is not empty")
    manifest = {
        "format": FORMAT,
        "spec": raw,
        "axes": [],
        "runs": [],
        # Orders as lists: sweep.json is written with sorted keys, and run names follow them.
        "search": {
            "axis_order": [a.name for a in spec.axes],
            "groups": [
                {"axes": list(g.axes.items()), "config": g.config.to_dict()} for g in spec.groups
            ],
        },
    }
    return spec, manifest


class SearchState:
    """The manifest's trials, read as objective values, and the walk of every group."""

    def __init__(self, spec: SearchSpec, manifest: dict[str, Any], sweep_dir: Path):
        self.spec, self.manifest, self.sweep_dir = spec, manifest, sweep_dir
        self._trials: dict[tuple[int, Point, Any], PlannedRun] = {}
        self._values: dict[str, float] = {}

    @property
    def entries(self) -> dict[str, dict[str, Any]]:
        return {e["name"]: e for e in self.manifest["runs"]}

    def trial(self, group: int, point: Point, seed: Any) -> PlannedRun:
        key = (group, point, seed)
        if key not in self._trials:
            self._trials[key] = self.spec.trial(self.spec.groups[group], point, seed)
        return self._trials[key]

    def run_value(self, entry: dict[str, Any]) -> float | None:
        """A run's objective: None unless finished; NaN if it failed or lacks the column."""
        if entry["status"] == "failed":
            return math.nan
        if entry["status"] != "done":
            return None
        if entry["name"] not in self._values:
            from interp.sweep.table import run_row

            row = run_row(entry, self.sweep_dir / RUNS_DIR / entry["name"])
            value = row.get(self.spec.objective)
            self._values[entry["name"]] = float(value) if value is not None else math.nan
        return self._values[entry["name"]]

    def value(self, group: int, point: Point) -> float | None:
        """The mean over the search's seeds at `point` (None until every seed finished)."""
        entries, values = self.entries, []
        for seed in self.spec.seeds:
            entry = entries.get(self.trial(group, point, seed).name)
            v = None if entry is None else self.run_value(entry)
            if v is None:
                return None
            values.append(v)
        return math.fsum(values) / len(values)

    def plan(self, group: int) -> Plan:
        spec = self.spec
        return plan(
            lambda p: self.value(group, p), spec.start, spec.sizes, spec.minimize, spec.max_points
        )

    def add(self, group: int, point: Point, seeds, role: str) -> list[str]:
        """Entries for the runs of `point` not in the manifest yet; returns their names."""
        entries, added = self.entries, []
        for seed in seeds:
            run = self.trial(group, point, seed)
            if run.name in entries:
                continue
            self.manifest["runs"].append(
                {
                    "name": run.name,
                    "axes": run.axes,
                    "config": run.config.to_dict(),
                    "status": "pending",
                    "attempts": 0,
                    "search": {"group": group, "role": role},
                }
            )
            added.append(run.name)
        axes = (k for e in self.manifest["runs"] for k in e["axes"])
        self.manifest["axes"] = list(dict.fromkeys(axes))
        return added

    def step(self) -> list[str]:
        """Plan every group and add the runs the walks need next (then, for accepted groups,
        the confirmation seeds)."""
        added: list[str] = []
        for group in range(len(self.spec.groups)):
            walk = self.plan(group)
            for point in walk.needed:
                added += self.add(group, point, self.spec.seeds, "trial")
            if walk.status == "accepted" and self.spec.confirm_seeds:
                added += self.add(group, walk.current, self.spec.confirm_seeds, "confirm")
        return added

    def record(self) -> dict[str, Any]:
        """search.json (module docstring)."""
        spec, groups = self.spec, []
        for index, group in enumerate(spec.groups):
            walk = self.plan(index)
            mine = [e for e in self.manifest["runs"] if e.get("search", {}).get("group") == index]
            trials = [e for e in mine if e["search"]["role"] == "trial"]
            certificate = []
            for point, value in walk.certificate:
                axis = next(i for i, (a, b) in enumerate(zip(point, walk.current)) if a != b)
                certificate.append(
                    {
                        "axis": spec.axes[axis].name,
                        "step": point[axis] - walk.current[axis],
                        "point": spec.labels(point),
                        "value": _finite(value),
                    }
                )
            groups.append(
                {
                    "group": group.axes,
                    "status": walk.status,
                    "point": spec.labels(walk.current),
                    "value": _finite(self.value(index, walk.current)),
                    "certificate": certificate,
                    "neighbours": len(neighbours(walk.current, spec.sizes)),
                    "path": [spec.labels(p) for p in walk.path],
                    "points": len(walk.evaluated),
                    "trials": len(trials),
                    "failed": sum(e["status"] == "failed" for e in trials),
                    "trial_seconds": round(sum(e.get("seconds", 0.0) for e in trials), 1),
                    "confirm_runs": [e["name"] for e in mine if e["search"]["role"] == "confirm"],
                    #: every run at the point: its trial seeds', then the confirmation runs
                    "point_runs": [self.trial(index, walk.current, s).name for s in spec.seeds]
                    + [e["name"] for e in mine if e["search"]["role"] == "confirm"],
                }
            )
        return {
            "objective": spec.objective,
            "minimize": spec.minimize,
            "seeds": list(spec.seeds),
            "axes": [
                {"name": a.name, "values": list(a.values), "fields": a.fields} for a in spec.axes
            ],
            "start": spec.labels(spec.start),
            "groups": groups,
        }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def run_search(
    spec_path: str | Path | None,
    sweep_dir: str | Path,
    *,
    resume: bool = False,
    workers: int = 1,
    threads: int = 1,
    backend: str = "local",
    address: str | None = None,
    resources: dict[str, float] | None = None,
    progress: bool = True,
) -> SearchOutcome:
    """Run the search `spec_path` (None with `resume`) into `sweep_dir` (module docstring);
    returns each group's record (search.json) and what ran."""
    sweep_dir = Path(sweep_dir)
    if backend not in ("local", "ray"):
        raise SpecError(f"--backend: expected local or ray, got {backend!r}")
    if backend == "ray":
        from interp.sweep.ray_backend import require_ray

        require_ray()
    spec, manifest = prepare_search(spec_path, sweep_dir, resume)
    (sweep_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    state = SearchState(spec, manifest, sweep_dir)
    outcome = SearchOutcome(sweep_dir, [])
    start = time.perf_counter()
    leftover = {e["name"] for e in manifest["runs"] if e["status"] != "done"}
    pool = None
    if backend == "local":  # one pool for every round: TransformerLens imported once
        from interp.sweep.local import LocalPool

        pool = LocalPool(workers, threads, progress=progress, keep=True)
    try:
        while True:
            todo = set(state.step()) | leftover
            leftover = set()
            runs.atomic_write_json(sweep_dir / SWEEP_FILE, manifest)
            runs.atomic_write_json(sweep_dir / SEARCH_FILE, state.record())
            if not todo:
                break
            outcome.rounds += 1
            done = run_entries(
                manifest,
                sweep_dir,
                workers=workers,
                threads=threads,
                backend=backend,
                address=address,
                resources=resources,
                progress=progress,
                only=todo,
                pool=pool,
            )
            outcome.ran += len(todo)
            outcome.failed += done.failed
    finally:
        if pool is not None:
            pool.close()
        runs.atomic_write_json(sweep_dir / SWEEP_FILE, manifest)
    record = state.record()
    runs.atomic_write_json(sweep_dir / SEARCH_FILE, record)
    outcome.groups, outcome.runs = record["groups"], len(manifest["runs"])
    outcome.seconds = time.perf_counter() - start
    return outcome


def search_lines(sweep_dir: str | Path) -> list[str]:
    """One paragraph per group of the search in `sweep_dir` (empty for a plain sweep): the
    accepted point, its value and the certificate, for `interp sweep analyze`."""
    path = Path(sweep_dir) / SEARCH_FILE
    if not path.exists():
        return []
    record = runs.read_json(path)
    lines = [f"search: {record['objective']} ({'min' if record['minimize'] else 'max'}imized)"]
    for g in record["groups"]:
        where = ", ".join(f"{k}={v}" for k, v in g["group"].items()) or "(one group)"
        point = ", ".join(f"{k}={v}" for k, v in g["point"].items())
        lines.append(
            f"  {where}: {g['status']} {point}: {_fmt(g['value'])}; {g['points']} points, "
            f"{g['trials']} trial runs ({g['failed']} failed), {len(g['path']) - 1} moves"
        )
        for c in g["certificate"]:
            sign = "+" if c["step"] > 0 else "-"
            value = c["point"][c["axis"]]
            lines.append(f"    {c['axis']} {sign}1 ({value}): {_fmt(c['value'])}")
    return lines


def _fmt(value: float | None) -> str:
    return "failed" if value is None else f"{value:.6g}"
