"""Live tracking (issue 25): `--log tensorboard|wandb|mlflow` on train, analyze and sweep run.
What the tools store is read back with their own readers (TensorBoard's EventAccumulator,
wandb's record protobufs, MLflow's client) and compared with metrics.jsonl, config.json and the
analysis table."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from interp import tracking, tracking_mlflow
from interp.cli import main
from interp.collapse import CollapseEvent
from tests.conftest import tiny_config
from tests.sweep_helpers import write_spec

QUICK = ["-q", "--threads", "1"]


def _config_file(folder: Path) -> Path:
    """A tiny run (20 steps, 3 checkpoints) as a config file for the CLI."""
    config = tiny_config(train__steps=20, train__ckpt_every=10, train__ckpt_log_until=0)
    path = folder / "tiny.json"
    path.write_text(json.dumps(config.to_dict()))
    return path


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _accumulator(log_dir: Path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator"
    )
    accumulator = event_accumulator.EventAccumulator(
        str(log_dir), size_guidance={"scalars": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def _scalars(accumulator) -> dict[str, dict[int, float]]:
    return {
        tag: {event.step: event.value for event in accumulator.Scalars(tag)}
        for tag in accumulator.Tags()["scalars"]
    }


def _hparams(accumulator) -> dict:
    from tensorboard.plugins.hparams import metadata

    content = accumulator.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(
        content[metadata.SESSION_START_INFO_TAG]
    )
    values = {}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        values[key] = getattr(value, kind)
    return values


def _assert_hparams_hold(hparams: dict, expected: dict) -> None:
    for key, value in expected.items():
        if isinstance(value, (bool, int, float)):
            assert hparams[key] == pytest.approx(float(value)), key
        else:
            assert hparams[key] == value, key


def _texts(accumulator, tag: str) -> dict[int, str]:
    return {
        event.step: event.tensor_proto.string_val[0].decode()
        for event in accumulator.Tensors(f"{tag}/text_summary")
    }


def test_train_and_analyze_log_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    config = _config_file(tmp_path)
    assert main(["train", str(config), "--out", str(run_dir), "--log", "tensorboard", *QUICK]) == 0

    accumulator = _accumulator(run_dir / "tensorboard")
    logged = _scalars(accumulator)
    rows = _metrics(run_dir)
    numeric = {k for row in rows for k, v in row.items() if isinstance(v, (int, float))}
    assert set(logged) == numeric - {"step"}
    for row in rows:  # every row at its step, the value as TensorBoard stores it (float32)
        for key, value in tracking.scalars(row).items():
            assert logged[key][row["step"]] == np.float32(value), (key, row["step"])
    config_json = json.loads((run_dir / "config.json").read_text())
    _assert_hparams_hold(_hparams(accumulator), tracking.flatten(config_json))

    # The analysis adds its own columns beside the training curves, which stay whole.
    assert main(["analyze", str(run_dir), "--log", "tensorboard", "--no-figures", *QUICK]) == 0
    expected = _analysis_only_values(run_dir, rows)
    after = _scalars(_accumulator(run_dir / "tensorboard"))
    for key in numeric - {"step"}:
        assert after[key] == logged[key], key
    checked = 0
    for column, values in expected.items():
        for step, value in values.items():
            # table.csv keeps 6 significant digits; TensorBoard float32
            assert after[column][step] == pytest.approx(value, rel=1e-5, abs=1e-6), column
            checked += 1
    assert checked > 0


def _analysis_only_values(run_dir: Path, rows: list[dict]) -> dict[str, dict[int, float]]:
    """The finite numbers of analysis/table.csv's columns that metrics.jsonl (`rows`) lacks,
    by column and step: what `interp analyze --log` must have sent."""
    import csv

    with open(run_dir / "analysis" / "table.csv") as handle:
        table = list(csv.DictReader(handle))
    added = [c for c in table[0] if c not in {k for row in rows for k in row}]
    assert added, "the analysis table has no analysis-only column"
    values: dict[str, dict[int, float]] = {}
    for column in added:
        for row in table:
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                continue
            if math.isfinite(value):
                values.setdefault(column, {})[int(row["step"])] = value
    return values


def test_collapse_events_are_text_at_their_step(tmp_path):
    pytest.importorskip("tensorboard")
    event = CollapseEvent(step=30, first_step=10, metric="train_acc", value=0.2, best=1.0,
                          best_step=5)
    tracker = tracking.TensorBoardTracker(tmp_path / "tb", lambda: {"train.lr": 0.001})
    tracker.log_row({"step": 0, "train_acc": 0.5})
    tracker.log_row({"step": 30, "train_acc": 0.2, "events": [event.to_dict()]})
    tracker.close()
    accumulator = _accumulator(tmp_path / "tb")
    assert _texts(accumulator, tracking.EVENTS_TAG) == {30: event.describe()}
    assert _hparams(accumulator) == {"train.lr": pytest.approx(0.001)}


def test_a_resumed_trackers_first_step_replaces_the_tail(tmp_path):
    """A resumed run logs again from its last complete checkpoint: the killed process's later
    points are dropped (purge_step), so each step has one value."""
    pytest.importorskip("tensorboard")
    first = tracking.TensorBoardTracker(tmp_path / "tb")
    for step in (0, 10, 20, 30):
        first.log_row({"step": step, "loss": float(step)})
    first.close()
    resumed = tracking.TensorBoardTracker(tmp_path / "tb")
    for step in (20, 30, 40):
        resumed.log_row({"step": step, "loss": -float(step)})
    resumed.close()
    assert _scalars(_accumulator(tmp_path / "tb"))["loss"] == {
        0: 0.0, 10: 10.0, 20: -20.0, 30: -30.0, 40: -40.0
    }


def _wandb_records(run_file: Path) -> list:
    """The records of an offline run's .wandb file (wandb's LevelDB-style log: 32 KiB blocks of
    chunks with a 7-byte header crc32/length/type after the file's own 7-byte header),
    parsed with wandb's own protobuf."""
    from wandb.proto import wandb_internal_pb2

    data, block = run_file.read_bytes(), 32768
    ident, _, _ = struct.unpack("<4sHB", data[:7])
    assert ident == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full or last chunk: a record is complete
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


@pytest.fixture
def wandb_offline_env(tmp_path, monkeypatch):
    """No credentials anywhere, and wandb's own folders inside tmp_path."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_train_log_wandb_offline_without_credentials(tmp_path, wandb_offline_env):
    pytest.importorskip("wandb")
    assert tracking.wandb_mode() == "offline"
    run_dir = tmp_path / "run"
    config = _config_file(tmp_path)
    assert main(["train", str(config), "--out", str(run_dir), "--log", "wandb", *QUICK]) == 0

    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    (run_file,) = offline.glob("*.wandb")
    records = _wandb_records(run_file)
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {
                (item.key or "/".join(item.nested_key)): json.loads(item.value_json)
                for item in record.history.item
            }
            history[items["_step"]] = items
    rows = _metrics(run_dir)
    assert sorted(history) == [row["step"] for row in rows]
    for row in rows:
        for key, value in tracking.scalars(row).items():
            assert history[row["step"]][key] == pytest.approx(value), key
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    flat = tracking.flatten(json.loads((run_dir / "config.json").read_text()))
    for key, value in flat.items():
        assert config[key] == (pytest.approx(value) if isinstance(value, float) else value), key


def test_wandb_goes_online_only_with_credentials(tmp_path, wandb_offline_env, monkeypatch):
    assert tracking.wandb_mode() == "offline"
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert tracking.wandb_mode() == "online"
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert tracking.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert tracking.wandb_mode() == "disabled"


@pytest.mark.parametrize("extra", ["tensorboard", "wandb", "mlflow"])
def test_a_missing_extra_is_one_line_naming_the_install(extra, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, extra, None)  # `import extra` raises ImportError
    config = _config_file(tmp_path)
    spec = write_spec(tmp_path, '[grid]\n"train.weight_decay" = [1.0]', steps=20)
    commands = {
        "train": ["train", str(config), "--out", str(tmp_path / "run")],
        "analyze": ["analyze", str(tmp_path / "run")],
        "sweep": ["sweep", "run", str(spec), "--out", str(tmp_path / "sweep")],
    }
    for name, argv in commands.items():
        if name == "analyze":  # needs a run: one without tracking
            assert main(["train", str(config), "--out", str(tmp_path / "run"), *QUICK]) == 0
        capsys.readouterr()
        assert main([*argv, "--log", extra, "-q"]) == 2, name
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        assert err.strip() == f"error: --log {extra}: {extra} is not installed; pip install " \
            f"'interp[{extra}]'", name
    assert not (tmp_path / "sweep").exists()
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_sweep_runs_log_their_axes_as_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    from interp.sweep.spec import load_spec

    spec = write_spec(tmp_path, '[grid]\n"train.weight_decay" = [0.5, 2.0]', steps=20)
    out = tmp_path / "sweep"
    argv = ["sweep", "run", str(spec), "--out", str(out), "-w", "1", "--log", "tensorboard", "-q"]
    assert main(argv) == 0
    planned = {run.name: run for run in load_spec(spec).runs}
    assert {p.name for p in (out / "runs").iterdir()} == set(planned)  # names: config only
    for name, run in planned.items():
        accumulator = _accumulator(out / "runs" / name / "tensorboard")
        hparams = _hparams(accumulator)
        _assert_hparams_hold(hparams, run.axes)
        _assert_hparams_hold(hparams, tracking.flatten(run.config.to_dict()))
        rows = _metrics(out / "runs" / name)
        assert _scalars(accumulator)["train_loss"] == {
            row["step"]: np.float32(row["train_loss"]) for row in rows
        }


def test_the_cli_imports_no_tracking_backend():
    """`interp --help` stays instant: neither backend (nor torch) is imported with the CLI."""
    code = "import sys, interp.cli; print(sorted(m for m in ('tensorboard', 'wandb', 'mlflow', " \
        "'torch') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def _mlflow_runs(store: Path) -> list:
    """Every run of the "interp" experiment in the SQLite store in `store`, read with MLflow's
    own client."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("interp")
    return client, client.search_runs([experiment.experiment_id])


def _mlflow_history(client, run_id: str, key: str) -> dict[int, float]:
    points = client.get_metric_history(run_id, key)
    assert len({p.step for p in points}) == len(points), f"{key}: a step logged twice"
    return {p.step: p.value for p in points}


@pytest.fixture
def mlflow_env(monkeypatch):
    pytest.importorskip("mlflow")
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


def test_train_and_analyze_log_to_mlflow(tmp_path, mlflow_env):
    """Every metrics row at its step, the config as params, then the analysis-only columns in
    the same MLflow run (one run in the store)."""
    run_dir = tmp_path / "run"
    config = _config_file(tmp_path)
    assert main(["train", str(config), "--out", str(run_dir), "--log", "mlflow", *QUICK]) == 0
    client, runs = _mlflow_runs(run_dir / "mlflow")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags["interp.run_dir"] == str(run_dir.resolve())
    rows = _metrics(run_dir)
    numeric = {k for row in rows for k, v in row.items() if isinstance(v, (int, float))}
    assert set(run.data.metrics) == numeric - {"step"}
    for key in numeric - {"step"}:
        expected = {row["step"]: float(row[key]) for row in rows if key in row}
        assert _mlflow_history(client, run.info.run_id, key) == expected, key
    flat = tracking.flatten(json.loads((run_dir / "config.json").read_text()))
    assert run.data.params == {k: str(v) for k, v in flat.items()}
    assert not (tmp_path / "mlruns").exists()  # artifacts beside the database, not in the cwd

    assert main(["analyze", str(run_dir), "--log", "mlflow", "--no-figures", *QUICK]) == 0
    expected = _analysis_only_values(run_dir, rows)
    client, runs = _mlflow_runs(run_dir / "mlflow")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    checked = 0
    for column, values in expected.items():
        logged = _mlflow_history(client, runs[0].info.run_id, tracking_mlflow.metric_key(column))
        for step, value in values.items():  # table.csv keeps 6 significant digits
            assert logged[step] == pytest.approx(value, rel=1e-5, abs=1e-6), column
            checked += 1
    assert checked > 0


def test_a_resumed_run_goes_on_in_its_mlflow_run(tmp_path, mlflow_env):
    """A killed trainer's MLflow run is continued after its last step (one value per step),
    events are text artifacts at their step, and a run started over (step 0) is a new run."""
    event = CollapseEvent(step=40, first_step=30, metric="train_acc", value=0.2, best=1.0,
                          best_step=5)
    run_dir = tmp_path / "run"

    def tracker():
        return tracking_mlflow.MlflowTracker(
            run_dir / "mlflow", lambda: {"train.lr": 0.001}, run_dir=run_dir, name="run"
        )

    killed = tracker()
    for step in (0, 10, 20, 30):
        killed.log_row({"step": step, "loss": float(step)})
    # killed: never closed
    resumed = tracker()
    for step in (20, 30, 40):
        row = {"step": step, "loss": -float(step)}
        if step == 40:
            row["events"] = [event.to_dict()]
        resumed.log_row(row)
    resumed.close()
    client, runs = _mlflow_runs(run_dir / "mlflow")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run_id = runs[0].info.run_id
    assert _mlflow_history(client, run_id, "loss") == {0: 0.0, 10: 10.0, 20: 20.0, 30: 30.0,
                                                       40: -40.0}
    text = Path(client.download_artifacts(run_id, "events/step_00000040.txt", str(tmp_path)))
    assert text.read_text() == event.describe()

    assert runs[0].data.params == {"train.lr": "0.001"}
    again = tracker()
    again.log_row({"step": 0, "loss": 1.0})
    again.close()
    _, runs = _mlflow_runs(run_dir / "mlflow")
    assert len(runs) == 2


def test_a_sweeps_runs_share_one_mlflow_store(tmp_path, mlflow_env):
    from interp.sweep.spec import load_spec

    spec = write_spec(tmp_path, '[grid]\n"train.weight_decay" = [0.5, 2.0]', steps=20)
    out = tmp_path / "sweep"
    argv = ["sweep", "run", str(spec), "--out", str(out), "-w", "2", "--log", "mlflow", "-q"]
    assert main(argv) == 0
    planned = {run.name: run for run in load_spec(spec).runs}
    client, runs = _mlflow_runs(out / "mlflow")
    assert {run.info.run_name for run in runs} == set(planned)
    for run in runs:
        axes = tracking.flatten(planned[run.info.run_name].axes)
        assert {k: run.data.params[k] for k in axes} == {k: str(v) for k, v in axes.items()}
        assert run.data.tags["interp.group"] == "sweep"
        rows = _metrics(out / "runs" / run.info.run_name)
        assert _mlflow_history(client, run.info.run_id, "train_loss") == {
            row["step"]: float(row["train_loss"]) for row in rows
        }
