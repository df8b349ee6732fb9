"""The neighbour search (`interp sweep search`): the planner reaches a certified point on planted
objectives, the spec is checked before anything runs, and a real search on tiny graph-walk
runs walks to the predictable optimum, records its certificate, and resumes by re-planning
without re-running finished trials."""

from __future__ import annotations

import json
import math
import random

import pytest

from interp.cli import main
from interp.sweep.search import grid_points, neighbours, parse_search, plan
from interp.sweep.search_run import run_search
from interp.sweep.spec import SpecError
from tests.sweep_helpers import WALK_SET

TINY = [*WALK_SET, "train.keep_checkpoints=final"]


def walk(objective, start, sizes, **kw):
    """Run the planner to the end against a table of values, as the runner would."""
    known: dict = {}
    while True:
        result = plan(known.get, start, sizes, **kw)
        if result.status != "running":
            return result, known
        for point in result.needed:
            known[point] = objective(point)


def test_the_walk_reaches_the_optimum_of_a_convex_table_without_the_whole_grid():
    sizes = (6, 5, 4)
    bowl = lambda p: (p[0] - 4) ** 2 + 2 * (p[1] - 1) ** 2 + 0.5 * (p[2] - 3) ** 2  # noqa: E731
    result, known = walk(bowl, (0, 4, 0), sizes)
    assert result.status == "accepted" and result.current == (4, 1, 3)
    assert len(known) < len(grid_points(sizes)) / 2  # neighbours, not the grid
    assert {p for p, _ in result.certificate} == set(neighbours((4, 1, 3), sizes))
    assert all(v > bowl((4, 1, 3)) for _, v in result.certificate)
    assert result.path[0] == (0, 4, 0) and len(set(result.path)) == len(result.path)


def test_on_any_table_the_accepted_point_beats_every_neighbour():
    rng = random.Random(0)
    for trial in range(200):
        sizes = tuple(rng.randint(1, 5) for _ in range(rng.randint(1, 3)))
        table = {p: rng.random() for p in grid_points(sizes)}
        start = tuple(rng.randrange(n) for n in sizes)
        result, _ = walk(table.__getitem__, start, sizes, minimize=trial % 2 == 0)
        sign = 1 if trial % 2 == 0 else -1
        assert result.status == "accepted"
        assert all(sign * table[result.current] <= sign * v for _, v in result.certificate)


def test_ties_stay_failures_count_as_worst_and_max_points_stops():
    flat, _ = walk(lambda p: 1.0, (1, 1), (3, 3))
    assert flat.current == (1, 1) and flat.status == "accepted"
    failed = {(0,): 2.0, (1,): math.nan, (2,): 1.0}
    result, _ = walk(failed.__getitem__, (0,), (3,))
    assert result.current == (0,)  # the failed neighbour is not better; the walk stops
    stopped, known = walk(lambda p: -sum(p), (0, 0), (9, 9), max_points=5)
    assert stopped.status == "stopped" and len(known) <= 8


def spec_text(search: str, seeds: str = "[0]") -> dict:
    import tomllib

    body = f'base = "graph-walk"\nset = {json.dumps(TINY)}\nseeds = {seeds}\n{search}'
    return tomllib.loads(body)


SEARCH = """
[search]
objective = "final_val_loss"
confirm_seeds = [1]
[search.axes]
"train.weight_decay" = [0.0, 0.001, 0.01]
[search.axes.budget]
values = ["short", "mid", "long"]
"train.steps" = [2, 8, 40]
"train.ckpt_every" = [2, 8, 40]
[search.start]
budget = "short"
"train.weight_decay" = 0.0
"""


@pytest.mark.parametrize(
    "change, named",
    [
        (('"final_val_loss"', '"final_test_loss"'), "never a test metric"),
        (('"final_val_loss"', '"final_excess_loss"'), "search.objective"),
        (('budget = "short"', 'budget = "tiny"'), "search.start.budget"),
        (('"train.ckpt_every" = [2, 8, 40]', '"train.ckpt_every" = [2, 8]'), "search.axes.budget"),
        (("= [0.0, 0.001, 0.01]", "= [-1.0, 0.0]"), "search.axes.train.weight_decay"),
        (('"train.weight_decay" = [0.0,', "train.weight_decay = [0.0,"), "tied axis needs"),
    ],
)
def test_a_bad_search_spec_is_refused_naming_the_key(change, named):
    with pytest.raises(SpecError, match=named):
        parse_search(spec_text(SEARCH.replace(*change)))


def test_a_plain_sweep_refuses_a_search_spec(tmp_path, capsys):
    spec = tmp_path / "search.toml"
    spec.write_text(f'base = "graph-walk"\nset = {json.dumps(TINY)}\n{SEARCH}')
    assert main(["sweep", "run", str(spec), "--out", str(tmp_path / "s"), "-q"]) == 2
    assert "interp sweep search" in capsys.readouterr().err


def test_a_search_walks_to_the_longest_budget_certifies_it_and_resumes_by_replanning(
    tmp_path, capsys
):
    spec = tmp_path / "search.toml"
    spec.write_text(f'base = "graph-walk"\nset = {json.dumps(TINY)}\nseeds = [0]\n{SEARCH}')
    out = tmp_path / "search"
    assert main(["sweep", "search", str(spec), "--out", str(out), "-w", "1", "-q"]) == 0
    record = json.loads((out / "search.json").read_text())
    (group,) = record["groups"]
    # 2 → 8 → 40 steps of a tiny model: validation loss falls with every step budget.
    assert group["status"] == "accepted" and group["point"]["budget"] == "long"
    assert [p["budget"] for p in group["path"]][:2] == ["short", "mid"]
    assert len(group["certificate"]) == group["neighbours"] == 2
    assert all(c["value"] >= group["value"] for c in group["certificate"])
    manifest = json.loads((out / "sweep.json").read_text())
    trials = [e for e in manifest["runs"] if e["search"]["role"] == "trial"]
    assert group["trials"] == len(trials) == group["points"] < 9  # not the whole grid
    (confirm,) = group["confirm_runs"]  # the accepted point again with seed 1
    assert "seed=1" in confirm and all(e["status"] == "done" for e in manifest["runs"])
    # Every run at the accepted point is named: the trial's seed 0, then the confirmation.
    first, second = group["point_runs"]
    assert second == confirm and "seed=0" in first and "budget=long" in first
    assert (out / "runs" / first / "config.json").exists()
    printed = capsys.readouterr().out
    assert "accepted" in printed and "budget -1 (mid)" in printed

    # Every trial is an ordinary run folder; the table has the axes and the objective.
    assert main(["sweep", "analyze", str(out)]) == 0
    assert "budget -1 (mid)" in capsys.readouterr().out
    import pandas as pd

    table = pd.read_csv(out / "sweep.csv")
    assert {"budget", "train.steps", "train.weight_decay", "final_val_loss"} <= set(table)

    # Resume re-plans from the start point and finds everything done: nothing runs again.
    stamps = {e["name"]: (out / "runs" / e["name"] / "metrics.jsonl").stat().st_mtime_ns
              for e in manifest["runs"]}  # fmt: skip
    again = run_search(None, out, resume=True, workers=1, progress=False)
    assert again.ran == 0 and again.groups == record["groups"]
    # A search killed mid-round: one trial interrupted, the confirmation never planned.
    interrupted = trials[1]["name"]
    manifest["runs"] = [e for e in manifest["runs"] if e["search"]["role"] == "trial"]
    next(e for e in manifest["runs"] if e["name"] == interrupted)["status"] = "running"
    (out / "sweep.json").write_text(json.dumps(manifest))
    resumed = run_search(None, out, resume=True, workers=1, progress=False)
    assert resumed.ran == 2  # the interrupted trial, then the confirmation run re-planned
    assert resumed.groups[0]["point"] == group["point"]
    for name, stamp in stamps.items():
        if name != interrupted and name in {e["name"] for e in trials}:
            assert (out / "runs" / name / "metrics.jsonl").stat().st_mtime_ns == stamp
    with pytest.raises(SpecError, match="differs"):
        other = tmp_path / "other.toml"
        other.write_text(spec.read_text().replace("[0.0, 0.001, 0.01]", "[0.0, 0.01]"))
        run_search(other, out, resume=True)


def test_a_resumed_search_plans_the_same_run_names_whatever_order_sweep_json_keeps(tmp_path):
    from interp import runs
    from interp.sweep.search_run import SearchState, prepare_search

    spec = tmp_path / "search.toml"
    grid = '[grid]\n"train.lr" = [0.01, 0.03]\n"model.d_model" = [16]\n'
    spec.write_text(f'base = "graph-walk"\nset = {json.dumps(TINY)}\nseeds = [0]\n{grid}{SEARCH}')
    fresh, manifest = prepare_search(spec, tmp_path / "out", resume=False)
    names = SearchState(fresh, manifest, tmp_path / "out").step()
    assert names[0].startswith("lr=0.01,d=16,wd=0,budget=short,seed=0-")
    (tmp_path / "out").mkdir()
    runs.atomic_write_json(tmp_path / "out" / "sweep.json", manifest)  # keys come back sorted
    resumed, stored = prepare_search(None, tmp_path / "out", resume=True)
    state = SearchState(resumed, stored, tmp_path / "out")
    assert state.step() == [] and [a.name for a in resumed.axes] == [a.name for a in fresh.axes]


def test_the_fixed_data_study_specs_plan():
    """experiments/sweeps/fixed_data/ (issue 23): every search and sweep there plans."""
    import tomllib
    from pathlib import Path

    from interp.sweep.spec import load_spec

    folder = Path(__file__).resolve().parents[3] / "experiments" / "sweeps" / "fixed_data"
    specs = sorted(folder.glob("*.toml"))
    assert len(specs) >= 9
    for path in specs:
        raw = tomllib.loads(path.read_text())
        if "search" in raw:
            spec = parse_search(raw, path.parent)
            assert spec.objective == "final_val_loss" and spec.confirm_seeds
        else:
            assert load_spec(path).runs


def test_a_search_runs_on_the_ray_backend(tmp_path):
    ray = pytest.importorskip("ray")
    import interp

    budget = SEARCH.split("[search.axes.budget]")[1].split("[search.start]")[0]
    spec = tmp_path / "search.toml"
    spec.write_text(
        f'base = "graph-walk"\nset = {json.dumps(TINY)}\nseeds = [0]\n[search]\n'
        f'[search.axes.budget]{budget}[search.start]\nbudget = "short"\n'
    )
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "search"
        assert (
            main(["sweep", "search", str(spec), "--out", str(out), "--backend", "ray", "-q"]) == 0
        )
    finally:
        ray.shutdown()
    (group,) = json.loads((out / "search.json").read_text())["groups"]
    assert group["point"] == {"budget": "long"} and group["trials"] == 3
    for entry in json.loads((out / "sweep.json").read_text())["runs"]:
        assert interp.load_run(out / "runs" / entry["name"]).steps[-1] in (2, 8, 40)
