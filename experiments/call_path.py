"""How `interp analyze` walks through the analysis code: files entered and returns.

Traces one `interp analyze RUN --no-figures` on the last checkpoint of a fixture run and
records the sequence of analysis-layer files (`circuits/`, `probes/`, and
`interp/registry.py`, the family lookup) whose functions are called, merging consecutive
calls within one file. It prints the number of distinct files, the number of stops (file
changes along the path), the "returns" (a stop in a file the path had already left) and the
pipeline functions that family code calls (the documented interface: `analyze_each` and
friends), and the number of family lookups made by the analysis code (`interp.registry.get_family`,
directly
or through `family_of`, called from `circuits/`; config parsing looks families up too).

    python -m experiments.call_path two_hop_tiny      # or modular_demo, comparison_tiny

Run from another checkout (e.g. a worktree of an older commit) to compare versions: the
script reads only the fixtures and the `interp analyze` entry point.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

FIXTURES = Path("tests/fixtures/runs")
TRACED = ("circuits/", "probes/", "interp/registry.py")


def trace(run_name: str) -> tuple[list[str], int, list[str]]:
    """The merged sequence of traced files along one analysis, and the family lookups."""
    import torch

    from interp.cli import main
    from interp.runs import load_run

    torch.set_num_threads(1)
    root = Path.cwd().resolve()
    work = Path(tempfile.mkdtemp())
    run_dir = work / run_name
    shutil.copytree(FIXTURES / run_name, run_dir)
    last = load_run(run_dir).steps[-1]
    manifest = run_dir / "manifest.json"
    import json

    data = json.loads(manifest.read_text())
    key = "checkpoints" if isinstance(data, dict) and "checkpoints" in data else None
    if key:
        data[key] = [c for c in data[key] if c["step"] == last]
        manifest.write_text(json.dumps(data))
    path: list[str] = []
    lookups = 0
    into_pipeline: set[str] = set()  # pipeline functions that family code calls

    def profile(frame, event, arg):
        nonlocal lookups
        if event != "call":
            return
        file = frame.f_code.co_filename
        try:
            rel = Path(file).resolve().relative_to(root).as_posix()
        except ValueError:
            return
        if not rel.startswith(TRACED):
            return
        if rel == "interp/registry.py" and frame.f_code.co_name == "get_family":
            caller = frame.f_back
            while caller is not None and caller.f_code.co_filename == file:
                caller = caller.f_back  # family_of -> get_family: count the outside caller
            if caller is not None and "/circuits/" in caller.f_code.co_filename:
                lookups += 1
        caller = frame.f_back
        if rel.startswith("circuits/pipeline/") and caller is not None:
            if "/circuits/families/" in caller.f_code.co_filename:
                into_pipeline.add(f"{rel}:{frame.f_code.co_name}")
        if not path or path[-1] != rel:
            path.append(rel)

    sys.setprofile(profile)
    try:
        main(["analyze", str(run_dir), "--no-figures", "--quiet", "--threads", "1"])
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
        shutil.rmtree(work, ignore_errors=True)
    return path, lookups, sorted(into_pipeline)


def returns(path: list[str]) -> int:
    """Stops in a file that the path had entered and left before."""
    seen: set[str] = set()
    count = 0
    for i, file in enumerate(path):
        if file in seen:
            count += 1
        if i:
            seen.add(path[i - 1])
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="+", help="fixture run names (tests/fixtures/runs)")
    parser.add_argument("--path", action="store_true", help="print the whole path")
    args = parser.parse_args()
    for name in args.run:
        path, lookups, into_pipeline = trace(name)
        print(
            f"{name}: {len(set(path))} files, {len(path)} stops, {returns(path)} returns, "
            f"{lookups} family lookups; family code calls into the pipeline: "
            f"{', '.join(into_pipeline) or 'nothing'}"
        )
        if args.path:
            print("  " + "\n  ".join(path))


if __name__ == "__main__":
    main()
