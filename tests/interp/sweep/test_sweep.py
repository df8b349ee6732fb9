"""`interp sweep run/analyze` end to end on tiny runs: the plan, spec errors, failure isolation,
retention in the runs, the table with censored events, the report, and a killed sweep resumed
with nothing lost."""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

import interp
from interp import runs
from interp.cli import main
from interp.sweep.spec import load_spec
from tests.sweep_helpers import manifest, weights_bytes, write_spec

GRID = """
seeds = [0, 1]
[grid]
"train.weight_decay" = [0.3, 1.0]
"task.train_frac" = [0.5, 0.6]
[zip]
"train.warmup_steps" = [5, 10]
"train.beta2" = [0.98, 0.99]
[[runs]]
"train.lr" = 1e4
[names]
"train.beta2" = "b2"
"""


def test_the_plan_is_grid_times_zip_times_seeds_plus_extra_runs(tmp_path):
    spec = load_spec(write_spec(tmp_path, GRID))
    # 2 wd x 2 frac x 2 zipped rows x 2 seeds + 1 extra run x 2 seeds
    assert len(spec.runs) == 18
    names = [r.name for r in spec.runs]
    assert len(set(names)) == 18
    first = spec.runs[0]
    assert first.name.startswith("wd=0.3,frac=0.5,warmup_steps=5,b2=0.98,seed=0-")
    assert first.config.train.weight_decay == 0.3 and first.config.task.train_frac == 0.5
    assert first.config.model.seed == 0 and first.config.train.seed == 0
    assert first.config.train.keep_checkpoints == "events"  # the sweeps' default
    zipped = {(r.config.train.warmup_steps, r.config.train.beta2) for r in spec.runs[:16]}
    assert zipped == {(5, 0.98), (10, 0.99)}
    extra = [r for r in spec.runs if "lr" in r.name]
    assert [r.config.train.lr for r in extra] == [1e4, 1e4]
    # The name is stable (a hash of the whole config), so a re-planned sweep finds its runs.
    assert [r.name for r in load_spec(write_spec(tmp_path, GRID)).runs] == names


@pytest.mark.parametrize(
    "body, named",
    [
        ('[grid]\n"train.nope" = [1, 2]', "grid.train.nope"),
        ('[grid]\n"train.weight_decay" = []', "grid.train.weight_decay: the axis is empty"),
        ('[grid]\n"train.lr" = [1e-3, "fast"]', "grid.train.lr = 'fast'"),
        ('[grid]\n"train.weight_decay" = [-1.0]', "grid.train.weight_decay = -1.0"),
        ('[zip]\n"train.lr" = [1e-3, 2e-3]\n"train.seed" = [1]', "zip: the zipped axes"),
        ("seeds = [0, 1.5]", "seeds"),
        ('base = "no-such-preset"', "base/set"),
    ],
)
def test_a_bad_spec_is_refused_before_anything_runs_naming_the_axis(tmp_path, capsys, body, named):
    text = write_spec(tmp_path, body).read_text()
    if body.startswith("base"):
        text = text.replace('base = "demo"\n', "")
    (tmp_path / "spec.toml").write_text(text)
    out = tmp_path / "sweep"
    assert main(["sweep", "run", str(tmp_path / "spec.toml"), "--out", str(out), "-q"]) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_a_sweep_runs_isolates_a_failure_and_analyzes(tmp_path, capsys):
    spec = write_spec(tmp_path, GRID.replace('"task.train_frac" = [0.5, 0.6]', ""), steps=80)
    out = tmp_path / "sweep"
    assert main(["sweep", "run", str(spec), "--out", str(out), "-w", "2", "-q"]) == 1  # a failure
    m = manifest(out)
    status = {r["name"]: r["status"] for r in m["runs"]}
    failed = [r for r in m["runs"] if r["status"] == "failed"]
    assert len(status) == 10 and len(failed) == 2
    assert all("lr=10000" in r["name"] and "loss became nan" in r["error"] for r in failed)
    for entry in m["runs"]:
        if entry["status"] != "done":
            continue
        run = interp.load_run(out / "runs" / entry["name"])  # an ordinary run folder
        assert run.steps[-1] == 80 and 0 in run.steps
        assert len(run.metrics) > len(run.steps)  # retention pruned checkpoints, not metrics
        assert runs.read_best(run.path)["step"] in run.steps
    assert m["disk_bytes"] > 0
    err = capsys.readouterr().err
    assert "failed: lr=10000" in err

    assert main(["sweep", "analyze", str(out)]) == 0
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 10
    done = table[table["status"] == "done"]
    # Every event is there for every run; not reached means censored at the last step.
    for event in ("memorized", "generalized"):
        censored = done[f"{event}_censored"].astype(bool)
        assert (done.loc[censored, f"{event}_step"] == done.loc[censored, "last_step"]).all()
    assert set(done["outcome"]) <= {"comprehension", "grokking", "memorization", "confusion"}
    assert {"train.weight_decay", "seed", "final_test_acc", "wall_s"} <= set(table.columns)
    for _, run in done.iterrows():  # the table's values are each run's last metrics row
        last = runs.load_run(out / "runs" / run["run"]).metrics[-1]
        assert run["final_test_acc"] == pytest.approx(last["test_acc"])
        assert run["last_step"] == last["step"]
    html = (out / "sweep_report.html").read_text()
    assert "Outcomes" in html and "Failed runs" in html and "loss became nan" in html
    assert len(re.findall(r"plotly\.js v\d", html)) == 1  # inlined once: offline
    assert not re.search(r"<script[^>]+src=", html)


def test_a_killed_sweep_resumes_with_nothing_lost(tmp_path):
    """SIGKILL the whole sweep (coordinator and workers) mid-run; --resume finishes it, and
    the interrupted run's weights equal an uninterrupted run's, bit for bit."""
    spec = write_spec(tmp_path, "seeds = [0, 1, 2]", steps=800)
    out = tmp_path / "sweep"
    cli = "from interp.cli import entry_point; entry_point()"
    cmd = [sys.executable, "-c", cli, "sweep", "run", str(spec), "--out", str(out)]
    proc = subprocess.Popen(
        [*cmd, "-w", "1", "-q"], start_new_session=True, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while time.time() < deadline:  # wait until the first run is past a few checkpoints
        if (out / "sweep.json").exists():
            m = manifest(out)
            running = [r for r in m["runs"] if r["status"] == "running"]
            if running and len(runs.read_manifest(out / "runs" / running[0]["name"])) > 8:
                break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    m = manifest(out)
    interrupted = [r["name"] for r in m["runs"] if r["status"] == "running"]
    assert len(interrupted) == 1 and all(r["status"] != "done" for r in m["runs"][1:])

    assert main(["sweep", "run", "--resume", "--out", str(out), "-w", "2", "-q"]) == 0
    m = manifest(out)
    assert [r["status"] for r in m["runs"]] == ["done"] * 3
    entry = next(r for r in m["runs"] if r["name"] == interrupted[0])
    assert entry["attempts"] == 2 and entry["resumed"] is True
    reference = tmp_path / "reference"
    config = interp.load_run(out / "runs" / interrupted[0]).config
    interp.train(config, reference, progress=False)  # pruned by the same policy at its end
    assert weights_bytes(out / "runs" / interrupted[0]) == weights_bytes(reference)


def test_resume_refuses_a_different_spec_and_a_new_sweep_refuses_an_old_folder(tmp_path, capsys):
    spec = write_spec(tmp_path, "seeds = [0]", steps=20)
    out = tmp_path / "sweep"
    assert main(["sweep", "run", str(spec), "--out", str(out), "-w", "1", "-q"]) == 0
    assert main(["sweep", "run", str(spec), "--out", str(out), "-q"]) == 2
    assert "--resume finishes it" in capsys.readouterr().err
    other = write_spec(tmp_path, "seeds = [0, 1]", steps=20, name="other.toml")
    assert main(["sweep", "run", str(other), "--out", str(out), "--resume", "-q"]) == 2
    assert "plans other runs" in capsys.readouterr().err
    # A finished sweep resumed: nothing to do, nothing re-run.
    before = manifest(out)
    assert main(["sweep", "run", "--resume", "--out", str(out), "-q"]) == 0
    assert manifest(out)["runs"] == before["runs"]


def test_outcome_classes_follow_the_documented_thresholds():
    from interp.sweep.table import outcome

    assert outcome(None, None) == "confusion"
    assert outcome(100, None) == "memorization"
    assert outcome(100, 150) == "comprehension"  # lag 50 < 1.0 x 100
    assert outcome(100, 200) == "grokking"  # lag 100 >= 1.0 x 100
    assert outcome(75, 675) == "grokking"  # the demo
    assert math.isclose(len({outcome(a, b) for a in (None, 10) for b in (None, 15, 500)}), 4)


def test_a_relative_init_from_is_planned_as_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = load_spec(write_spec(tmp_path, '[grid]\n"train.init_from" = ["runs/demo@1500", ""]'))
    sources = [r.config.train.init_from for r in spec.runs]
    assert sources == [f"{tmp_path}/runs/demo@1500", ""]
    assert spec.runs[0].name.startswith("from=demo@1500-") and spec.runs[1].name.startswith(
        "from=-"
    )


def test_relative_data_files_are_planned_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "g.txt").write_text("0 1\n1 2\n2 0\n", encoding="utf-8")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'base = "graph-walk"\n'
        'set = ["task.graph=file", "task.edge_file=graphs/g.txt", "train.steps=5"]\n'
        '[grid]\n"train.lr" = [0.01]\n',
        encoding="utf-8",
    )
    (run,) = load_spec(spec).runs
    assert run.config.task.edge_file == f"{tmp_path}/graphs/g.txt"
    # A distillation teacher's members too, each keeping its checkpoint selector.
    spec.write_text(
        'base = "graph-walk"\n'
        'set = ["task.data=fixed", "task.teacher=runs/a,b=1@best+/abs/t", "train.steps=5"]\n'
        '[grid]\n"task.teacher_frac" = [0.5]\n',
        encoding="utf-8",
    )
    (run,) = load_spec(spec).runs
    assert run.config.task.teacher == f"{tmp_path}/runs/a,b=1@best+/abs/t"


def test_a_bad_backend_is_refused_before_anything_is_written(tmp_path, capsys):
    spec = write_spec(tmp_path, "seeds = [0]", steps=20)
    out = tmp_path / "sweep"
    assert main(["sweep", "run", str(spec), "--out", str(out), "--backend", "slurm", "-q"]) == 2
    err = capsys.readouterr().err  # a usage error: --backend is a choice
    assert "--backend" in err and "'local', 'ray'" in err and not out.exists()


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path):
    """Workers are spawned and import the calling script again: without the guard the
    script's own run_sweep call runs in the child, which cannot start."""
    spec = write_spec(tmp_path, "seeds = [0]", steps=5)
    script = tmp_path / "study.py"
    script.write_text(f"import interp\ninterp.run_sweep({str(spec)!r}, {str(tmp_path / 'sw')!r})\n")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "if __name__ == '__main__':" in done.stderr.splitlines()[-1]
