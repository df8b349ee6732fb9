"""The benchmark's reference: TransformerLens's own forward over every position, without the
shortcut.

This is what a researcher would write with TransformerLens and without the project's
shortcut: the hooked model (`interp.model.build_model`, so the very same initial weights as
the project's runs), the bridge's own full-sequence forward, the float32 loss at the last
position, and AdamW with the warm-up (`interp.optimizer.make_optimizer`, the trainer's). It
never calls the answer-position shortcut, so the two train the same function and any speed
difference is the shortcut's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from interp.config import RunConfig
from interp.model import build_model, parameters
from interp.optimizer import make_optimizer as _make_optimizer


def reference_from_config(config: RunConfig, device: str | torch.device = "cpu"):
    """The hooked model (TransformerBridge) with exactly the project's initial weights for
    `config`."""
    m, t = config.model, config.task
    return build_model(
        m, d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx, device=device
    )


def make_optimizer(model, config: RunConfig):
    """The trainer's AdamW and warm-up schedule, over the model's parameters."""
    return _make_optimizer(parameters(model).values(), config.train)


def reference_step(model, opt, sched, tokens: Tensor, labels: Tensor) -> Tensor:
    """One full-batch step; the loss is read at the last position (float32, as one would write
    it)."""
    logits = model(tokens)[:, -1]  # the bridge's forward: every position, hooks and all
    loss = F.cross_entropy(logits, labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()
    return loss


@dataclass
class GrokResult:
    grok_step: int | None  # first evaluated step with test accuracy >= target
    seconds: float  # wall-clock to grok_step (or to the end), evaluation included
    steps_run: int
    history: list[tuple[int, float, float]] = field(
        default_factory=list
    )  # (step, seconds, test_acc)


def train_reference_to_grok(
    config: RunConfig,
    *,
    target: float = 0.99,
    max_steps: int = 50_000,
    eval_every: int = 50,
    log=None,
    device: str = "cpu",
) -> GrokResult:
    """Train the reference with `config`'s optimizer settings until test accuracy >= target."""
    from interp.tasks import build_task

    task = build_task(config.task)
    model = reference_from_config(config, device)
    opt, sched = make_optimizer(model, config)
    train_x, train_y = (t.to(device) for t in task.split("train"))
    test_x, test_y = (t.to(device) for t in task.split("test"))
    start = time.perf_counter()
    history: list[tuple[int, float, float]] = []
    for step in range(1, max_steps + 1):
        reference_step(model, opt, sched, train_x, train_y)
        if step % eval_every == 0:
            with torch.inference_mode():
                acc = float((model(test_x)[:, -1].argmax(-1) == test_y).double().mean())
            elapsed = time.perf_counter() - start
            history.append((step, elapsed, acc))
            if log is not None:
                log(f"step {step} t {elapsed:.1f}s test_acc {acc:.4f}")
            if acc >= target:
                return GrokResult(step, elapsed, step, history)
    return GrokResult(None, time.perf_counter() - start, max_steps, history)
