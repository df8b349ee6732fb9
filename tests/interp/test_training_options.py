"""StableMax, ⊥Grad, the optimizer factory, the mod-add-fast preset and the benchmark's
reference."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from interp.metrics import cross_entropy_f64, stablemax_cross_entropy_f64
from interp.optimizer import make_optimizer, orthogonalize_grads_
from interp.presets import PRESETS
from interp.tasks import build_task
from interp.training import train
from tests.conftest import tiny_config


def test_stablemax_known_value_and_no_collapse():
    logits = torch.tensor([[0.0, 1.0, -1.0]])
    # s = (1, 2, 1/2): probability of class 1 is 2 / 3.5
    assert float(stablemax_cross_entropy_f64(logits, torch.tensor([1]))) == pytest.approx(
        -math.log(2 / 3.5)
    )
    huge = torch.tensor([[200.0, 0.0, -200.0]])
    assert float(cross_entropy_f64(huge.float(), torch.tensor([0]))) == 0.0  # softmax collapse
    assert float(stablemax_cross_entropy_f64(huge, torch.tensor([0]))) > 0.0


def test_orthogonal_grad_removes_the_parallel_component():
    param = torch.nn.Parameter(torch.randn(5, 3))
    param.grad = torch.randn(5, 3) + 2 * param.detach()
    orthogonalize_grads_({"w": param})
    assert float((param.grad * param.detach()).sum()) == pytest.approx(0.0, abs=1e-5)


def test_orthogonal_grad_per_seed_equals_each_seed_alone():
    weights, grads = torch.randn(3, 5, 4), torch.randn(3, 5, 4)
    weights[1] = 0  # a zero weight tensor keeps its gradient
    stacked = torch.nn.Parameter(weights.clone())
    stacked.grad = grads.clone()
    orthogonalize_grads_({"w": stacked}, seed_dims=1)
    for i in range(3):
        single = torch.nn.Parameter(weights[i].clone())
        single.grad = grads[i].clone()
        orthogonalize_grads_({"w": single})
        torch.testing.assert_close(stacked.grad[i], single.grad, rtol=1e-5, atol=1e-6)
    assert torch.equal(stacked.grad[1], grads[1])
    assert float((stacked.grad[0] * weights[0]).sum()) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize(
    "warmup, expected", [(4, [0.0, 2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2]), (0, [1e-2] * 6)]
)
def test_optimizer_is_adamw_with_linear_warmup(warmup, expected):
    train = tiny_config(train__lr=1e-2, train__warmup_steps=warmup, train__beta2=0.98).train
    param = torch.nn.Parameter(torch.ones(3))
    optimizer, scheduler = make_optimizer([param], train)
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert group["weight_decay"] == train.weight_decay and group["betas"] == (train.beta1, 0.98)
    lrs = []
    for _ in range(6):
        lrs.append(group["lr"])
        param.grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx(expected)


def test_the_batched_optimizer_updates_bit_for_bit_like_torchs_cpu_default():
    train = tiny_config(train__lr=3e-2, train__weight_decay=0.5, train__warmup_steps=0).train
    generator = torch.Generator().manual_seed(0)
    shapes = [(5, 4), (4,), (3, 5, 2), (1,)]
    start = [torch.randn(s, generator=generator) for s in shapes]
    ours = [torch.nn.Parameter(t.clone()) for t in start]
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    optimizer, _ = make_optimizer(ours, train)
    assert optimizer.param_groups[0]["foreach"] is True
    reference = torch.optim.AdamW(
        plain, lr=3e-2, weight_decay=0.5, betas=(train.beta1, train.beta2), foreach=False
    )
    for _ in range(10):
        grads = [torch.randn(s, generator=generator) for s in shapes]
        for params, opt in ((ours, optimizer), (plain, reference)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    assert all(torch.equal(a, b) for a, b in zip(ours, plain))


def test_cosine_schedule_warms_up_then_decays_to_zero_at_the_last_step():
    train = tiny_config(
        train__lr=1e-2, train__warmup_steps=2, train__steps=6, train__lr_schedule="cosine"
    ).train
    param = torch.nn.Parameter(torch.ones(3))
    optimizer, scheduler = make_optimizer([param], train)
    lrs = []
    for _ in range(7):
        lrs.append(optimizer.param_groups[0]["lr"])
        param.grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
    # warmup 0, 1/2; then cos over the 4 remaining updates: 1, (1+cos(pi/4))/2, 1/2, ...
    cosine = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert lrs == pytest.approx([0.0, 5e-3] + [1e-2 * c for c in cosine])
    assert lrs[-1] == 0.0


def test_lr_decays_once_at_the_first_checkpoint_whose_validation_accuracy_reaches_it(tmp_path):
    from interp.runs import load_run
    from interp.training import Trainer

    config = tiny_config(
        task__val_frac=0.2,
        train__steps=40,
        train__ckpt_every=10,
        train__ckpt_log_until=0,
        train__lr_decay_at_val_acc=1e-9,
        train__lr_decay_factor=0.25,
    )
    train(config, tmp_path / "run", progress=False)
    lrs = {r["step"]: r["lr"] for r in load_run(tmp_path / "run").metrics}
    # Each row logs the lr of the next update; the decay acts right after step 10's checkpoint.
    assert lrs[10] == pytest.approx(3e-3) and lrs[20] == lrs[40] == pytest.approx(7.5e-4)
    # The decayed base lr is in the scheduler state: a resumed run keeps it (not decayed twice).
    resumed = Trainer.from_run_dir(tmp_path / "run", progress=False)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-4)
    resumed.maybe_decay_lr({"val_acc": 1.0})
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-4)
    resumed.run()
    # Killed right after the checkpoint that decays (its saved state predates the decay): the
    # resumed run decays before its first update, as the uninterrupted one did.
    short = replace(config, train=replace(config.train, steps=10))
    train(short, tmp_path / "short", progress=False)
    resumed = Trainer.from_run_dir(tmp_path / "short", progress=False)
    resumed.config = config
    resumed.schedule = [10, 20, 30, 40]
    resumed.run()
    again = {r["step"]: r["lr"] for r in load_run(tmp_path / "short").metrics}
    assert again == lrs
    with pytest.raises(Exception, match="lr_decay_at_val_acc"):
        train(tiny_config(train__lr_decay_at_val_acc=0.99), tmp_path / "noval", progress=False)


def test_options_train_and_round_trip(tmp_path):
    config = tiny_config(
        train__loss="stablemax",
        train__orthogonal_grad=True,
        train__grad_filter="ema",
        train__steps=20,
    )
    assert type(config).from_dict(config.to_dict()) == config
    result = train(config, tmp_path / "run", progress=False)
    assert math.isfinite(result.last_row["train_loss"])


def test_mod_add_fast_keeps_mod_add_task_and_model():
    fast, anchor = PRESETS["mod-add-fast"], PRESETS["mod-add"]
    assert fast.model == anchor.model
    # Same task and training pairs; only a validation split is carved from the held-out pairs.
    assert replace(fast.task, val_frac=0.0) == anchor.task and fast.task.val_frac > 0
    fast_task, anchor_task = build_task(fast.task), build_task(anchor.task)
    assert torch.equal(fast_task.splits["train"], anchor_task.splits["train"])
    assert fast.train.stop_at_val_acc > 0 and fast.train.weight_norm_floor > 0
    assert fast.train.orthogonal_grad and fast.train.grad_filter == "ema"


def test_benchmark_reference_equals_the_project_model():
    from experiments.benchmarks.reference import reference_from_config
    from interp.model import answer_logits, build_model

    config = tiny_config()
    reference = reference_from_config(config)
    t = config.task
    model = build_model(config.model, d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
    tokens = torch.randint(0, t.d_vocab, (40, 3))
    with torch.no_grad():
        torch.testing.assert_close(
            reference(tokens)[:, -1], answer_logits(model, tokens), rtol=1e-5, atol=1e-6
        )
