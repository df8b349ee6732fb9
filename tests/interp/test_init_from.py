"""Starting from another run's weights (`--init-from`) and training on a nested subset of the
training pairs (`task.train_subset`): the two pieces an ungrokking study is made of."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from interp import training
from interp.cli import main
from interp.runs import load_run
from interp.tasks import build_task
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("init") / "source"
    training.train(tiny_config(), run_dir, progress=False)
    return run_dir


def _weights(run_dir, step):
    return load_run(run_dir).weights_at(step)


def test_a_run_starts_from_the_source_weights_and_records_where_from(source, tmp_path):
    last = load_run(source).steps[-1]
    config = tiny_config(train__init_from=str(source), train__steps=20, train__lr=1e-3)
    training.train(config, tmp_path / "b", progress=False)
    start = _weights(tmp_path / "b", 0)
    assert all(torch.equal(start[k], v) for k, v in _weights(source, last).items())
    saved = json.loads((tmp_path / "b" / "config.json").read_text())["train"]["init_from"]
    assert saved == f"{source.resolve()}@{last}"
    # A given step, through the CLI flag (the tiny config written as a file).
    out = str(tmp_path / "c")
    assert (
        main(
            [
                "train",
                str(_config_file(tmp_path)),
                "--out",
                out,
                "-q",
                "--init-from",
                f"{source}@20",
            ]
        )
        == 0
    )
    start = _weights(tmp_path / "c", 0)
    assert all(torch.equal(start[k], v) for k, v in _weights(source, 20).items())


def test_bad_sources_are_one_line_errors_naming_the_field(source, tmp_path, capsys):
    cases = {
        str(tmp_path / "nowhere"): "no such run folder",
        f"{source}@33": "has no complete checkpoint at step 33",
        f"{source}@x": "expected RUN_DIR or RUN_DIR@STEP",
    }
    for spec, expected in cases.items():
        capsys.readouterr()
        out = tmp_path / f"out{len(spec)}"
        assert (
            main(
                ["train", str(_config_file(tmp_path)), "--out", str(out), "-q", "--init-from", spec]
            )
            == 2
        )
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: train.init_from:") and expected in err, err
    wrong_shape = tiny_config(train__init_from=str(source), model__d_model=32, model__d_head=16)
    with pytest.raises(training.TrainingError, match="the model config must match"):
        training.train(wrong_shape, tmp_path / "shape", progress=False)


def _config_file(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_config(train__steps=10).to_dict()))
    return path


def test_a_resumed_run_no_longer_needs_its_source(source, tmp_path, monkeypatch):
    copy = tmp_path / "source"
    shutil.copytree(source, copy)
    config = tiny_config(
        train__init_from=str(copy),
        train__weight_norm_floor=1.0,
        train__steps=40,
        train__ckpt_every=10,
    )

    class Interrupted(Exception):
        pass

    original = training.Trainer.train_step

    def train_step(self):
        if self.step == 15:
            raise Interrupted
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(training.Trainer, "train_step", train_step)
        with pytest.raises(Interrupted):
            training.train(config, tmp_path / "b", progress=False)
    shutil.rmtree(copy)
    resumed = training.resume(tmp_path / "b", progress=False)
    whole = training.train(
        tiny_config(
            train__init_from=str(source),
            train__weight_norm_floor=1.0,
            train__steps=40,
            train__ckpt_every=10,
        ),
        tmp_path / "whole",
        progress=False,
    )
    assert resumed.final_step == whole.final_step == 40
    for step in load_run(tmp_path / "whole").steps:
        a, b = _weights(tmp_path / "b", step), _weights(tmp_path / "whole", step)
        assert all(torch.equal(a[k], b[k]) for k in a), step


def test_train_subsets_are_nested_and_leave_the_held_out_pairs_alone():
    base = tiny_config().task
    full = build_task(base)
    from dataclasses import replace

    small, large = (build_task(replace(base, train_subset=n)) for n in (10, 30))
    assert len(small.splits["train"]) == 10 and len(large.splits["train"]) == 30
    assert set(small.splits["train"].tolist()) <= set(large.splits["train"].tolist())
    assert set(large.splits["train"].tolist()) <= set(full.splits["train"].tolist())
    assert torch.equal(small.splits["test"], full.splits["test"])
    # Not simply the first N of the (sorted) split: a seeded random subset.
    assert small.splits["train"].tolist() != full.splits["train"][:10].tolist()
    with pytest.raises(ValueError, match="task.train_subset: 1000 is more than the"):
        build_task(replace(base, train_subset=1000))
