"""The Ray backend writes the same run folders as the local one: a local Ray instance
(`ray.init(num_cpus=2)`), the same tiny sweep through the CLI on both backends, and every
file compared (weights bit for bit; wall-time fields excepted)."""

from __future__ import annotations

import json

import ray

from interp.cli import main
from tests.sweep_helpers import manifest, write_spec

SPEC = 'seeds = [0, 1]\n[grid]\n"train.weight_decay" = [0.3, 1.0]'
#: Fields that measure wall time, the one thing allowed to differ.
WALL_TIME = {"time_s", "seconds", "elapsed_s"}


def _without_wall_time(obj):
    if isinstance(obj, dict):
        return {k: _without_wall_time(v) for k, v in obj.items() if k not in WALL_TIME}
    if isinstance(obj, list):
        return [_without_wall_time(v) for v in obj]
    return obj


def _files(run_dir):
    out = {}
    for path in sorted(run_dir.rglob("*")):
        name = path.relative_to(run_dir).as_posix()
        if not path.is_file() or name in ("provenance.json", ".writer.lock"):
            continue  # provenance records the host, the time and the process
        if name.endswith(".jsonl"):
            out[name] = [
                _without_wall_time(json.loads(line))
                for line in path.read_text().split("\n")
                if line
            ]
        elif name.endswith(".json"):
            out[name] = _without_wall_time(json.loads(path.read_text()))
        elif name.startswith("trainer/"):
            out[name] = path.stat().st_size  # holds the run's clock (elapsed_s) with its state
        else:
            out[name] = path.read_bytes()
    return out


def test_ray_backend_writes_the_same_run_folders_as_the_local_backend(tmp_path):
    spec = str(write_spec(tmp_path, SPEC, steps=60))
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main(["sweep", "run", spec, "--out", str(local), "-w", "2", "-q"]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert main(["sweep", "run", spec, "--out", str(on_ray), "--backend", "ray", "-q"]) == 0
    finally:
        ray.shutdown()
    names = [r["name"] for r in manifest(local)["runs"]]
    assert names == [r["name"] for r in manifest(on_ray)["runs"]] and len(names) == 4
    assert all(r["status"] == "done" for r in manifest(on_ray)["runs"])
    for name in names:
        a, b = _files(local / "runs" / name), _files(on_ray / "runs" / name)
        assert sorted(a) == sorted(b), name
        assert any(k.startswith("checkpoints/") for k in a)
        for key in a:
            assert a[key] == b[key], f"{name}/{key} differs between the backends"
    assert not list(on_ray.glob(".ray-storage-check*"))  # the storage check cleaned up
