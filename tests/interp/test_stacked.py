"""Ensemble members trained together (`interp.stacked`): each member equals its separate run
bit for bit (graph walks, on CPU), writes a complete run folder, and a stopped stack resumes
exactly, also with members killed at different steps."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from interp import runs, stacked, trainer_state
from interp.cli import main
from interp.model import build_model, parameters, sequence_logits, stacked_sequence_logits
from interp.runs import load_run
from interp.training import Trainer, resume, train
from tests.conftest import tiny_config, walk_config
from tests.reliability_helpers import assert_bit_identical

SEEDS = [0, 1, 2]


class Interrupted(Exception):
    pass


def _config(data: str = "fresh", steps: int = 60):
    config = walk_config(data, steps=steps)
    return replace(config, train=replace(config.train, ckpt_every=20, grad_clip=1.0))


def _strip(rows):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def _assert_same_run(a, b) -> None:
    """Every checkpoint's weights and every metric except wall time, bit for bit."""
    a, b = load_run(a), load_run(b)
    assert a.steps == b.steps
    for step in a.steps:
        assert_bit_identical(a.weights_at(step), b.weights_at(step))
    assert _strip(a.metrics) == _strip(b.metrics)


def _separate(config, root, seeds=SEEDS):
    for seed in seeds:
        train(stacked.member_config(config, seed), root / f"alone{seed}", progress=False)


@pytest.mark.parametrize("data", ["fresh", "fixed"])
def test_members_are_bit_identical_to_their_separate_runs(tmp_path, data):
    config = _config(data)
    result = stacked.train_members(config, tmp_path / "ens", SEEDS, progress=False)
    assert sorted(result.results) == [stacked.member_name(s) for s in SEEDS]
    assert not result.failures
    _separate(config, tmp_path)
    for seed in SEEDS:
        member = tmp_path / "ens" / stacked.member_name(seed)
        _assert_same_run(member, tmp_path / f"alone{seed}")
        # A complete, ordinary run folder: config with the member's seeds, trainer state.
        run = load_run(member)
        assert (run.config.model.seed, run.config.train.seed) == (seed, seed)
        assert trainer_state.saved_steps(member) == [config.train.steps]
        assert run.model_at(run.steps[-1]) is not None
        session = json.loads((member / "provenance.json").read_text())["sessions"][-1]
        assert len(session["stacked_with"]["members"]) == len(SEEDS)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(n_layers=2, normalization="LN", act_fn="gelu"),
        dict(n_layers=1, normalization="none", act_fn="relu"),
    ],
)
def test_the_stacked_forward_and_its_gradients_equal_each_members_own(overrides):
    config = walk_config()
    t = config.task
    shape = dict(d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
    models = [build_model(replace(config.model, seed=s, **overrides), **shape) for s in SEEDS]
    per_member = [parameters(m) for m in models]
    stack = {
        name: torch.stack([p[name].detach() for p in per_member]).requires_grad_()
        for name in per_member[0]
    }
    arch = build_model(replace(config.model, **overrides), **shape)
    tokens = torch.randint(t.d_vocab, (len(SEEDS), 5, t.context))
    logits = stacked_sequence_logits(arch, stack, tokens)
    weights = torch.randn_like(logits)
    (logits * weights).sum().backward()
    for i, model in enumerate(models):
        own = sequence_logits(model, tokens[i])
        assert torch.equal(own, logits[i])
        (own * weights[i]).sum().backward()
        for name, param in per_member[i].items():
            assert torch.equal(param.grad, stack[name].grad[i]), name


def test_other_families_train_together_through_vmap(tmp_path):
    """The default `Family.stacked_forward` (vmap): equal to float rounding."""
    config = tiny_config(train__grad_filter="ema", train__batch_size=16, train__grad_clip=1.0)
    stacked.train_members(config, tmp_path / "ens", [3, 4], progress=False)
    _separate(config, tmp_path, [3, 4])
    for seed in (3, 4):
        together = load_run(tmp_path / "ens" / stacked.member_name(seed)).metrics
        alone = load_run(tmp_path / f"alone{seed}").metrics
        for a, b in zip(together, alone, strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5, abs=1e-7)


def _interrupt(monkeypatch, config, out, *, at_step=None, manifest_of=None):
    """Train the members and stop: at a step, or in `manifest_of`'s manifest write at_step."""
    with monkeypatch.context() as patch:
        if manifest_of is None:
            original_step = stacked.MemberStack.train_step

            def train_step(self, batches):
                if self.step == at_step:
                    raise Interrupted
                return original_step(self, batches)

            patch.setattr(stacked.MemberStack, "train_step", train_step)
        else:
            original = runs.atomic_write_json

            def write_json(path, obj):
                if (
                    path.name == runs.MANIFEST_FILE
                    and path.parent.name == manifest_of
                    and obj["checkpoints"][-1]["step"] == at_step
                ):
                    raise Interrupted
                return original(path, obj)

            patch.setattr(runs, "atomic_write_json", write_json)
        with pytest.raises(Interrupted):
            stacked.train_members(config, out, SEEDS, progress=False)


def test_a_stopped_stack_resumes_exactly_and_a_member_resumes_alone(tmp_path, monkeypatch):
    config = _config("fresh")
    _separate(config, tmp_path)
    cut = tmp_path / "cut"
    _interrupt(monkeypatch, config, cut, at_step=30)
    alone = cut / stacked.member_name(SEEDS[0])
    assert load_run(alone).steps[-1] == 20
    # Any member's folder is an ordinary run: resumed on its own it ends as its separate run.
    resume(alone, progress=False)
    _assert_same_run(alone, tmp_path / f"alone{SEEDS[0]}")
    # The others resume together (the resumed member is done and stays as it is).
    result = stacked.resume_members(cut, progress=False)
    assert not result.failures and len(result.results) == len(SEEDS)
    for seed in SEEDS:
        _assert_same_run(cut / stacked.member_name(seed), tmp_path / f"alone{seed}")


def test_members_killed_at_different_steps_are_brought_level(tmp_path, monkeypatch):
    config = _config("fixed")
    _separate(config, tmp_path)
    cut = tmp_path / "cut"
    # Killed while member seed=1 writes its step-40 checkpoint: seed=0 is at 40, the others 20.
    _interrupt(monkeypatch, config, cut, at_step=40, manifest_of=stacked.member_name(1))
    steps = [load_run(cut / stacked.member_name(s)).steps[-1] for s in SEEDS]
    assert steps == [40, 20, 20]
    stacked.resume_members(cut, progress=False)
    for seed in SEEDS:
        _assert_same_run(cut / stacked.member_name(seed), tmp_path / f"alone{seed}")


def test_a_member_whose_loss_is_not_finite_stops_and_the_others_go_on(tmp_path):
    config = _config("fixed", steps=40)
    members = [
        Trainer(stacked.member_config(config, s), tmp_path / "ens" / f"m{s}", progress=False)
        for s in SEEDS
    ]
    for member in members:
        member.run_dir.mkdir(parents=True)
    real = members[1].loss_fn
    members[1].loss_fn = lambda logits, labels: real(logits, labels) * float("nan")
    result = stacked.run_members(members, tmp_path / "ens", progress=False)
    assert list(result.failures) == ["m1"] and "step 1" in result.failures["m1"]
    assert load_run(tmp_path / "ens" / "m1").steps == [0]
    _separate(config, tmp_path, [0, 2])
    for seed in (0, 2):  # the others redid the step without it, as if alone
        _assert_same_run(tmp_path / "ens" / f"m{seed}", tmp_path / f"alone{seed}")


def test_the_command_line_trains_resumes_and_refuses_by_name(tmp_path, capsys):
    spec = tmp_path / "walk.json"
    spec.write_text(json.dumps(_config("fixed", steps=40).to_dict()))
    out = tmp_path / "ens"
    assert main(["train", str(spec), "--out", str(out), "--seeds", "0,1", "-q"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("trained 40 steps into") == 2
    assert sorted(p.name for p in out.iterdir()) == ["seed=0", "seed=1", runs.STACKED_FILE]
    assert main(["train", "--resume", "--out", str(out), "-q"]) == 0  # finished: unchanged
    assert main(["ensemble", str(out / "seed=0"), str(out / "seed=1")]) == 0
    assert main(["analyze", str(out / "seed=1"), "--transitions", "--no-figures", "-q"]) == 0
    assert main(["train", str(spec), "--out", str(out), "--seeds", "0,1", "-q"]) == 2
    assert "--resume" in capsys.readouterr().err
    for bad, says in (
        (["--seeds", "1,1"], "--seeds"),
        (["--seeds", "0,x"], "--seeds"),
        (["--seeds", "0,1", "--set", "train.weight_norm_floor=0.5"], "train.weight_norm_floor"),
    ):
        assert main(["train", str(spec), "--out", str(tmp_path / "bad"), *bad]) == 2
        assert says in capsys.readouterr().err


def test_each_member_logs_to_its_own_tracker(tmp_path):
    pytest.importorskip("tensorboard")
    spec = tmp_path / "walk.json"
    spec.write_text(json.dumps(_config("fixed", steps=20).to_dict()))
    out = tmp_path / "ens"
    argv = ["train", str(spec), "--out", str(out), "--seeds", "0,1", "-q", "--log", "tensorboard"]
    assert main(argv) == 0
    for name in ("seed=0", "seed=1"):
        assert any((out / name / "tensorboard").iterdir())
