"""Reliability and safety (issue 6): exact resume, damaged and hostile run folders, numerical
faults, a full disk, SIGKILL at random moments, and analysis reading a run that is training.

Everything here trains real tiny models into real folders; nothing is mocked except the
two faults that cannot be produced on demand (a kill between two Python statements and a
full disk), which are injected at the exact call that would fail.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
import time
from pathlib import Path

import pytest
import torch

import interp.training as training
from interp import runs, trainer_state
from interp.runs import RunError, Skipped, load_run
from interp.training import TrainingError, resume, train
from tests.reliability_helpers import (
    assert_bit_identical,
    check_listed_checkpoints,
    final_weights,
    listed_steps,
    resume_config,
    train_or_resume,
    training_context,
)


class Interrupted(Exception):
    """Stands in for the process dying at a chosen point (the subprocess test kills for real)."""


def _train_until_interrupted(
    config, run_dir: Path, monkeypatch, *, at_step: int, during_checkpoint: bool
):
    """Train `config` into `run_dir` and stop it at `at_step`: between steps or inside a save."""
    with monkeypatch.context() as patch:
        if during_checkpoint:
            # Dies after the weights file and trainer state are written, before the manifest.
            original = runs.atomic_write_json

            def write_json(path, obj):
                if path.name == runs.MANIFEST_FILE and obj["checkpoints"][-1]["step"] == at_step:
                    raise Interrupted
                return original(path, obj)

            patch.setattr(runs, "atomic_write_json", write_json)
        else:
            original_step = training.Trainer.train_step

            def train_step(self):
                if self.step == at_step:
                    raise Interrupted
                return original_step(self)

            patch.setattr(training.Trainer, "train_step", train_step)
        with pytest.raises(Interrupted):
            train(config, run_dir, progress=False)


# -- exact resume ------------------------------------------------------------------------------

RESUME_CASES = {
    "ema-minibatch-between-steps": (
        dict(train__grad_filter="ema", train__batch_size=16),
        25,
        False,
    ),
    "ma-minibatch-inside-save": (
        dict(train__grad_filter="ma", train__grokfast_window=4, train__batch_size=16),
        20,
        True,
    ),
    "ma-fullbatch-between-steps": (
        dict(train__grad_filter="ma", train__grokfast_window=4),
        13,
        False,
    ),
    "no-filter-minibatch-clip": (dict(train__batch_size=8, train__grad_clip=0.5), 31, False),
    # ⊥Grad + weight decay with a norm floor: binding from the first step (the rescaled weights
    # must resume exactly), and armed only after the interruption (the flag is saved state).
    "orthogonal-ema-norm-floor-binding": (
        dict(
            task__p=23,
            train__lr=1e-2,
            train__weight_decay=2.0,
            train__orthogonal_grad=True,
            train__grad_filter="ema",
            train__weight_norm_floor=1.0,
            train__steps=60,
        ),
        35,
        False,
    ),
    "orthogonal-ema-norm-floor-arms-later": (
        dict(
            task__p=23,
            train__lr=1e-2,
            train__orthogonal_grad=True,
            train__grad_filter="ema",
            train__weight_norm_floor=1.05,
            train__steps=40,
        ),
        5,
        False,
    ),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path, monkeypatch, case):
    overrides, at_step, during_checkpoint = RESUME_CASES[case]
    config = resume_config(**overrides)
    train(config, tmp_path / "straight", progress=False)

    broken = tmp_path / "interrupted"
    _train_until_interrupted(
        config, broken, monkeypatch, at_step=at_step, during_checkpoint=during_checkpoint
    )
    last_complete = load_run(broken).steps[-1]
    assert last_complete < at_step  # the interrupted checkpoint (if any) is not listed

    result = resume(broken, progress=False)

    assert result.final_step == config.train.steps
    assert_bit_identical(final_weights(tmp_path / "straight"), final_weights(broken))
    # Every checkpoint and every metric (except wall time) matches too, with no duplicate rows.
    straight, resumed = load_run(tmp_path / "straight"), load_run(broken)
    assert straight.steps == resumed.steps
    for step in straight.steps:
        assert_bit_identical(straight.weights_at(step), resumed.weights_at(step))
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]  # noqa: E731
    assert strip(straight.metrics) == strip(resumed.metrics)
    # Only the latest trainer state is kept.
    assert trainer_state.saved_steps(broken) == [config.train.steps]


def test_trainer_state_is_safetensors_and_json_only(tmp_path):
    train(
        resume_config(train__grad_filter="ema", train__batch_size=16),
        tmp_path / "run",
        progress=False,
    )
    files = sorted(p.name for p in (tmp_path / "run" / runs.TRAINER_STATE_DIR).iterdir())
    assert files == ["state_000000040.json", "state_000000040.safetensors"]
    meta = json.loads((tmp_path / "run" / trainer_state.state_files(40)[1]).read_text())
    tensors = runs.load_tensors(tmp_path / "run" / trainer_state.state_files(40)[0], meta["sha256"])
    assert {"rng.torch", "rng.data", "data.order"} <= set(tensors)
    assert any(k.startswith("filter.ema.") for k in tensors)
    assert any(k.endswith(".exp_avg_sq") for k in tensors)


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    train(resume_config(), run_dir, progress=False)
    before = {p: p.read_bytes() for p in run_dir.rglob("*.safetensors")}
    result = resume(run_dir, progress=False)
    assert result.final_step == 40
    assert {p: p.read_bytes() for p in run_dir.rglob("*.safetensors")} == before


def test_resume_without_trainer_state_says_which_file(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _train_until_interrupted(
        resume_config(), run_dir, monkeypatch, at_step=15, during_checkpoint=False
    )
    shutil.rmtree(run_dir / runs.TRAINER_STATE_DIR)
    with pytest.raises(
        TrainingError, match=r"cannot resume exactly from step 10: .*state_000000010\.json: missing"
    ):
        resume(run_dir, progress=False)


def test_resume_of_a_folder_without_checkpoints_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match=r"^resume=True: .*config\.json: missing"):
        resume(tmp_path / "empty", progress=False)


# -- numerical faults -----------------------------------------------------------------------------


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    # lr = 1e30: Adam moves every weight by ~1e30 per step, so the logits overflow within a
    # few steps. Checkpoints every step make "the last good one" precise.
    config = resume_config(
        train__lr=1e30, train__warmup_steps=0, train__ckpt_every=1, train__steps=50
    )
    run_dir = tmp_path / "run"
    with pytest.raises(TrainingError) as info:
        train(config, run_dir, progress=False)
    message = str(info.value)
    last = load_run(run_dir).steps[-1]
    assert message.startswith(
        f"training loss became nan at step {last + 1}; stopped."
    ) or message.startswith(f"training loss became inf at step {last + 1}; stopped.")
    assert f"last good checkpoint is step {last} in {run_dir}" in message
    assert check_listed_checkpoints(run_dir)[-1] == last
    assert [r["step"] for r in load_run(run_dir).metrics] == load_run(run_dir).steps


# -- disk full
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "full_at", ["step_000000030.safetensors", "state_000000030.json", "manifest.json"]
)
def test_disk_full_mid_save_leaves_the_previous_checkpoints_intact(tmp_path, monkeypatch, full_at):
    """The disk fills up while checkpoint 30 is being saved, at its first, a middle or its last
    write."""
    run_dir = tmp_path / "run"
    armed = {"name": None}
    snapshot: dict[Path, bytes] = {}

    class FullDisk:
        """A file handle that writes half of what it is given, then reports ENOSPC."""

        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.handle, name)

    original_mkstemp, original_fdopen = runs.tempfile.mkstemp, runs.os.fdopen
    opened: dict[int, str] = {}

    def mkstemp(*args, prefix="", **kwargs):
        fd, name = original_mkstemp(*args, prefix=prefix, **kwargs)
        opened[fd] = prefix
        return fd, name

    def fdopen(fd, *args, **kwargs):
        handle = original_fdopen(fd, *args, **kwargs)
        if armed["name"] is not None and opened.get(fd) == f".{armed['name']}.":
            return FullDisk(handle)
        return handle

    original_checkpoint = training.Trainer.checkpoint

    def checkpoint(self):
        if self.step == 30:
            snapshot.update({p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()})
            armed["name"] = full_at
        return original_checkpoint(self)

    monkeypatch.setattr(runs.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(runs.os, "fdopen", fdopen)
    monkeypatch.setattr(training.Trainer, "checkpoint", checkpoint)
    with pytest.raises(TrainingError) as info:
        train(resume_config(), run_dir, progress=False)
    message = str(info.value)
    assert "\n" not in message
    assert (
        "cannot write the checkpoint for step 30: [Errno 28] No space left on device: " in message
    )
    assert f"{full_at}'" in message  # the file that could not be written
    assert "still lists step 20 as the last complete checkpoint" in message
    assert f"in {run_dir}; free space and continue it with resume=True" in message
    # Nothing that existed before the failed save changed, and no partial file is left.
    # (metrics.jsonl is written just before the manifest, so when the manifest write is the
    # one that fails it already holds the row for step 30: rows are only ever appended.)
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    metrics = run_dir / runs.METRICS_FILE
    assert after[metrics].startswith(snapshot.pop(metrics))
    assert {p: after.get(p) for p in snapshot} == snapshot
    assert not [p for p in after if p.name.endswith(".tmp")]
    assert check_listed_checkpoints(run_dir) == [0, 10, 20]
    expected_rows = [0, 10, 20, 30] if full_at == "manifest.json" else [0, 10, 20]
    assert [r["step"] for r in load_run(run_dir).metrics] == expected_rows
    # Once there is space again, the run resumes and finishes.
    armed["name"] = None
    monkeypatch.setattr(training.Trainer, "checkpoint", original_checkpoint)
    assert resume(run_dir, progress=False).final_step == 40
    assert check_listed_checkpoints(run_dir) == [0, 10, 20, 30, 40]
    assert [r["step"] for r in load_run(run_dir).metrics] == [0, 10, 20, 30, 40]


# -- damaged run folders ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """A finished tiny run; tests copy it before damaging it."""
    run_dir = tmp_path_factory.mktemp("good") / "run"
    train(resume_config(), run_dir, progress=False)
    return run_dir


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "damaged"
    shutil.copytree(run_dir, target)
    return target


def _damage(run_dir: Path, step: int, how: str) -> str:
    """Damage the checkpoint at `step`; returns a regex the skip reason must match."""
    path = run_dir / runs.checkpoint_name(step)
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        return r"step_000000020\.safetensors: contents do not match the manifest's sha256"
    if how == "bit-flip":
        data = bytearray(path.read_bytes())
        data[-5] ^= 0xFF
        path.write_bytes(bytes(data))
        return r"step_000000020\.safetensors: contents do not match the manifest's sha256"
    if how == "missing":
        path.unlink()
        return r"step_000000020\.safetensors: cannot read: No such file"
    manifest = json.loads((run_dir / runs.MANIFEST_FILE).read_text())
    if how == "not-safetensors":
        # Garbage with the manifest's hash updated: only the format check can catch it.
        data = b"\x00" * 64
    elif how == "shape-mismatch":
        # A valid file from a wider model, hash updated: only the shape check can catch it.
        wider = resume_config(model__d_model=24)
        from interp.model import build_model, state_dict

        model = build_model(wider.model, d_vocab=12, d_vocab_out=11, n_ctx=3)
        from safetensors.torch import save

        data = save(state_dict(model))
    else:  # pragma: no cover
        raise ValueError(how)
    path.write_bytes(data)
    import hashlib

    for entry in manifest["checkpoints"]:
        if entry["step"] == step:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
    (run_dir / runs.MANIFEST_FILE).write_text(json.dumps(manifest))
    if how == "not-safetensors":
        return r"step_000000020\.safetensors: not a valid safetensors file"
    return (
        r"step_000000020\.safetensors: weights do not match the config: "
        r".* has shape \(12, 24\), config expects \(12, 16\)"
    )


@pytest.mark.parametrize(
    "how", ["truncated", "bit-flip", "missing", "not-safetensors", "shape-mismatch"]
)
def test_damaged_checkpoint_is_reported_by_file_name_and_skipped(good_run, tmp_path, how):
    import re

    run_dir = _copy(good_run, tmp_path)
    pattern = _damage(run_dir, 20, how)
    run = load_run(run_dir)

    with pytest.raises(RunError, match=pattern):
        run.model_at(20)

    skipped: list[Skipped] = []
    seen = [step for step, _ in run.iter_models(on_error=skipped.append)]
    assert seen == [0, 10, 30, 40]
    assert [s.step for s in skipped] == [20]
    assert skipped[0].path == run_dir / runs.checkpoint_name(20)
    assert re.search(pattern, skipped[0].reason), skipped[0].reason
    assert "\n" not in skipped[0].reason and "Traceback" not in skipped[0].reason

    # Without a callback the damage is an error, never a silently shortened run.
    with pytest.raises(RunError, match=pattern):
        list(run.iter_models())


def test_iter_models_after_a_skip_yields_the_right_weights(good_run, tmp_path):
    """The reused model must not keep half-loaded weights from the damaged file."""
    run_dir = _copy(good_run, tmp_path)
    _damage(run_dir, 20, "shape-mismatch")
    run = load_run(run_dir)
    for step, model in run.iter_models(on_error=lambda s: None):
        from interp.model import state_dict

        assert_bit_identical(state_dict(model), load_run(good_run).weights_at(step))


def test_missing_or_broken_config_is_named(good_run, tmp_path):
    run_dir = _copy(good_run, tmp_path)
    (run_dir / runs.CONFIG_FILE).unlink()
    with pytest.raises(RunError, match=r"config\.json: missing"):
        load_run(run_dir)
    (run_dir / runs.CONFIG_FILE).write_text('{"task": {"p": "eleven"}}')
    with pytest.raises(RunError, match=r"config\.json: task\.p: expected an integer, got 'eleven'"):
        load_run(run_dir)
    (run_dir / runs.CONFIG_FILE).write_text('{"task": ')
    with pytest.raises(RunError, match=r"config\.json: not valid JSON"):
        load_run(run_dir)


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"step": 5, "file": "../../outside.safetensors", "sha256": None},
            "must be a path under checkpoints/",
        ),
        ({"step": 5, "file": "/etc/passwd.safetensors"}, "must be a path under checkpoints/"),
        ({"step": 5, "file": "checkpoints/step_5.pt"}, "must name a .safetensors file"),
        (
            {"step": "5", "file": "checkpoints/x.safetensors"},
            "'step' must be a non-negative integer",
        ),
        ({"file": "checkpoints/x.safetensors"}, "'step' must be a non-negative integer"),
        ("checkpoints/x.safetensors", "expected an object"),
    ],
)
def test_hostile_manifest_entries_are_refused(good_run, tmp_path, entry, message):
    run_dir = _copy(good_run, tmp_path)
    manifest = json.loads((run_dir / runs.MANIFEST_FILE).read_text())
    manifest["checkpoints"].append(entry)
    (run_dir / runs.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(
        RunError, match=r"manifest\.json: checkpoints\[5\]: .*" + message.replace(".", r"\.")
    ):
        load_run(run_dir)


# -- no code from disk
# --------------------------------------------------------------------------------


class _Payload:
    """Unpickling this runs `touch MARKER`: what a hostile checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_in_a_run_folder_runs_no_code(good_run, tmp_path):
    run_dir = _copy(good_run, tmp_path)
    marker = tmp_path / "PWNED"
    payload = pickle.dumps({"weights": _Payload(marker)})
    assert not marker.exists()
    # Planted everywhere a loader might look: as the checkpoint the manifest lists (hash
    # updated, so only the format check stands in the way), as a .pt beside it, as split
    # and trainer state.
    import hashlib

    target = run_dir / runs.checkpoint_name(20)
    target.write_bytes(payload)
    (run_dir / "checkpoints" / "step_000000020.pt").write_bytes(payload)
    (run_dir / runs.SPLIT_FILE).write_bytes(payload)
    for name in trainer_state.state_files(40):
        (run_dir / name).write_bytes(payload)
    manifest = json.loads((run_dir / runs.MANIFEST_FILE).read_text())
    for entry in manifest["checkpoints"]:
        if entry["step"] == 20:
            entry["sha256"] = hashlib.sha256(payload).hexdigest()
    (run_dir / runs.MANIFEST_FILE).write_text(json.dumps(manifest))

    run = load_run(run_dir)
    with pytest.raises(RunError, match="not a valid safetensors file"):
        run.model_at(20)
    skipped: list[Skipped] = []
    assert [s for s, _ in run.iter_models(on_error=skipped.append)] == [0, 10, 30, 40]
    with pytest.raises(RunError, match=r"split\.safetensors: not a valid safetensors file"):
        run.task  # noqa: B018
    with pytest.raises(TrainingError):
        resume(run_dir, progress=False)
    # The loader used for external .pt files refuses it too.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(run_dir / "checkpoints" / "step_000000020.pt", weights_only=True)
    assert not marker.exists()
    # The payload is live: an unsafe loader would have run it (proves the test can fail).
    pickle.loads(payload)
    assert marker.exists()


def test_interp_never_unpickles():
    """Static guard: no pickle import and no torch.load without weights_only=True in the
    packages."""
    import re

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [
        *root.glob("interp/**/*.py"),
        *root.glob("circuits/**/*.py"),
        *root.glob("probes/**/*.py"),
    ]:
        text = path.read_text()
        if re.search(r"^\s*(import pickle|from pickle|import dill|import joblib)", text, re.M):
            offenders.append(f"{path}: imports a pickle library")
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            if "weights_only=True" not in call:
                offenders.append(f"{path}: {call}")
    assert offenders == []


# -- kill safety and live analysis
# -------------------------------------------------------------------


def _wait_for_progress(run_dir: Path, child, beyond: int, timeout: float = 120.0) -> None:
    """Block until the manifest lists more than `beyond` checkpoints (or the child ends)."""
    deadline = time.monotonic() + timeout
    while len(listed_steps(run_dir)) <= beyond and child.is_alive():
        assert time.monotonic() < deadline, "the training child made no progress"
        time.sleep(0.005)


def kill_and_resume(tmp_path: Path, *, n_kills: int, steps: int, seed: int) -> dict[str, int]:
    """Train in a child process, SIGKILL it at random moments `n_kills` times (resuming in a
    new child after each), check the folder after every kill, then finish and compare with
    an uninterrupted run. Returns the counts the issue note reports."""
    import signal

    # A checkpoint every step: most of the wall time is spent saving, so kills land inside saves.
    config = resume_config(
        train__steps=steps, train__ckpt_every=1, train__batch_size=16, train__grad_filter="ema"
    )
    train(config, tmp_path / "straight", progress=False)
    run_dir = tmp_path / "killed"
    context = training_context()
    rng = random.Random(seed)
    kills, lost, torn = 0, [], 0
    for attempt in range(n_kills):
        child = context.Process(
            target=train_or_resume, args=(config.to_dict(), str(run_dir), attempt == 0)
        )
        child.start()
        _wait_for_progress(run_dir, child, beyond=len(listed_steps(run_dir)))
        time.sleep(rng.uniform(0.0, 0.1))
        listed_before = listed_steps(run_dir)
        child.kill()
        child.join()
        exitcode = child.exitcode
        child.close()
        if exitcode == 0:
            break  # it finished before the kill landed
        assert exitcode == -signal.SIGKILL
        kills += 1
        # A kill inside a save leaves an unlisted weights file, a second trainer state or a temp
        # file.
        listed = set(listed_steps(run_dir))
        on_disk = {
            int(p.stem.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*.safetensors")
        }
        temp = list(run_dir.rglob(".*.tmp"))
        torn += bool(on_disk - listed or temp or len(trainer_state.saved_steps(run_dir)) > 1)
        after = check_listed_checkpoints(
            run_dir
        )  # every listed checkpoint loads and matches its hash
        lost += sorted(set(listed_before) - set(after))
    resume(run_dir, progress=False)
    assert check_listed_checkpoints(run_dir) == load_run(tmp_path / "straight").steps
    assert_bit_identical(final_weights(tmp_path / "straight"), final_weights(run_dir))
    assert not list(run_dir.rglob(".*.tmp"))
    return {"kills": kills, "lost": len(lost), "inside_save": torn}


def test_sigkill_at_random_moments_loses_no_listed_checkpoint_and_resume_is_exact(tmp_path):
    counts = kill_and_resume(tmp_path, n_kills=5, steps=40, seed=1234)
    assert counts["kills"] >= 4
    assert counts["lost"] == 0


@pytest.mark.slow
def test_sigkill_many_times(tmp_path):
    """The measurement for the issue note: many kill points over a longer run."""
    counts = kill_and_resume(tmp_path, n_kills=40, steps=400, seed=7)
    print(f"\nkill test: {counts}")
    assert counts["lost"] == 0
    assert counts["inside_save"] >= 1, "no kill landed inside a save"


def test_analysis_reads_a_run_while_it_trains(tmp_path):
    """load_run + every listed model, over and over, while another process writes checkpoints."""
    config = resume_config(train__steps=50, train__ckpt_every=1, train__batch_size=16)
    run_dir = tmp_path / "live"
    child = training_context().Process(
        target=train_or_resume, args=(config.to_dict(), str(run_dir), True)
    )
    child.start()
    _wait_for_progress(run_dir, child, beyond=0)
    passes, lengths_seen, models_read = 0, set(), 0
    while child.is_alive():
        run = load_run(run_dir)
        rows = run.metrics
        assert [r["step"] for r in rows][: len(run.steps)] == run.steps
        for _step, _model in run.iter_models():  # raises on any damaged listed checkpoint
            models_read += 1
        lengths_seen.add(len(run.steps))
        passes += 1
    child.join()
    assert child.exitcode == 0
    child.close()
    assert passes >= 3 and len(lengths_seen) >= 3 and models_read > passes, (passes, lengths_seen)
    assert check_listed_checkpoints(run_dir)[-1] == 50


def test_resume_with_an_edited_trainer_state_is_refused_by_name(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _train_until_interrupted(
        resume_config(train__batch_size=16),
        run_dir,
        monkeypatch,
        at_step=15,
        during_checkpoint=False,
    )
    json_file = run_dir / trainer_state.state_files(10)[1]
    meta = json.loads(json_file.read_text())
    del meta["scheduler"]
    json_file.write_text(json.dumps(meta))
    with pytest.raises(
        TrainingError,
        match=r"state_000000010\.json: trainer state does not fit this run \(KeyError",
    ):
        resume(run_dir, progress=False)


def test_unwritable_out_is_a_one_line_training_error(tmp_path):
    if os.geteuid() == 0:
        # root ignores permissions: use a path under a regular file instead (ENOTDIR).
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "run"
    else:  # pragma: no cover - depends on who runs the tests
        (tmp_path / "locked").mkdir(mode=0o500)
        out = tmp_path / "locked" / "run"
    with pytest.raises(
        TrainingError, match=r"^/.*run: cannot prepare the run folder: \[Errno \d+\] "
    ) as info:
        train(resume_config(), out, progress=False)
    assert "\n" not in str(info.value) and info.value.argument == "out"


def test_a_second_writer_is_refused_while_one_holds_the_run(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    _train_until_interrupted(
        resume_config(), run_dir, monkeypatch, at_step=15, during_checkpoint=False
    )
    fd = runs.acquire_writer_lock(run_dir)  # stands in for a trainer still running on this folder
    try:
        with pytest.raises(
            TrainingError, match=r"^resume=True: .*run: another process is writing this run"
        ):
            resume(run_dir, progress=False)
        with pytest.raises(
            TrainingError, match=r"^/.*run: another process is writing this run"
        ) as info:
            train(resume_config(), run_dir, progress=False, overwrite=True)
        assert info.value.argument == "out"
        assert load_run(run_dir).steps == [0, 10]
    finally:
        runs.release_writer_lock(fd)
    assert resume(run_dir, progress=False).final_step == 40


def test_resume_of_an_early_stopped_run_stays_stopped(tmp_path):
    # stop_at_val_acc=1e-9 is met by any checkpoint: the run stops after 2 in a row (after step 0).
    config = resume_config(
        task__val_frac=0.3, train__stop_at_val_acc=1e-9, train__stop_patience=2, train__lr=1e-4
    )
    first = train(config, tmp_path / "run", progress=False)
    assert first.stopped_early and first.final_step == 20
    again = resume(tmp_path / "run", progress=False)
    assert again.stopped_early and again.final_step == 20
    assert load_run(tmp_path / "run").steps == [0, 10, 20]


def test_resume_mid_streak_stops_where_the_uninterrupted_run_stops(tmp_path, monkeypatch):
    # lr 1e-4 keeps validation accuracy near chance (> 0) at every checkpoint, so the streak is
    # unbroken.
    config = resume_config(
        task__val_frac=0.3, train__stop_at_val_acc=1e-9, train__stop_patience=3, train__lr=1e-4
    )
    straight = train(config, tmp_path / "straight", progress=False)
    _train_until_interrupted(
        config, tmp_path / "run", monkeypatch, at_step=25, during_checkpoint=False
    )
    resumed = resume(tmp_path / "run", progress=False)
    assert (
        (resumed.final_step, resumed.stopped_early)
        == (straight.final_step, straight.stopped_early)
        == (30, True)
    )
