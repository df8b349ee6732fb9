"""Several seeds of one model trained at once, in one process, with stacked weights.

Every parameter gets a leading `seed` axis and one forward serves all seeds: the trainer's
own answer-position shortcut, run under `torch.func.vmap` (`interp.model.stacked_answer_logits`).
AdamW, weight decay and the Grokfast filters are elementwise, so one optimizer and one filter
over the stacked tensors (`interp.optimizer`, the trainer's own) are exactly S independent
ones; ⊥Grad projects per seed. The loss is the *sum* of the per-seed mean losses, so seed i's
gradient is exactly its single-run gradient. On a GPU this turns S small launches per op into
one (throughput grows with S until the device is busy); on a CPU the gain is smaller (the
matmuls are already large).

Ensemble members with their own run folders, data orders, minibatches, clipping and resume,
for every family: `interp.stacked` (`interp train --seeds`). Scope here: full batch, no
gradient clipping (one norm over the stacked gradients would couple the
seeds) and no weight-norm floor. `tests/interp/test_multiseed.py` checks seed i follows the loss
trajectory of a single-seed `Trainer` run.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.config import RunConfig
from interp.metrics import cross_entropy_f64, stablemax_cross_entropy_f64
from interp.model import build_model, parameters, stacked_answer_logits
from interp.optimizer import make_filter, make_optimizer, orthogonalize_grads_
from interp.schedule import resolve_device
from interp.tasks import build_task


class MultiSeedTrainer:
    """`seeds` copies of `config`'s model (model.seed = each seed), trained in lockstep."""

    def __init__(self, config: RunConfig, seeds: list[int], device: str | None = None):
        t, train = config.task, config.train
        if (
            train.batch_size != 0
            or train.grad_clip > 0
            or train.weight_norm_floor
            or train.lr_decay_at_val_acc
        ):
            raise ValueError(
                "MultiSeedTrainer: full batch only, no grad_clip, no weight_norm_floor, "
                "no lr_decay_at_val_acc"
            )
        self.config, self.seeds = config, list(seeds)
        self.device = resolve_device(device or train.device)
        self.task = build_task(t)
        shape = dict(d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx)
        # Initialized on the CPU, as a single-seed run's weights are, then moved.
        per_seed = [
            parameters(build_model(replace(config.model, seed=seed), **shape))
            for seed in self.seeds
        ]
        #: native parameter name -> that parameter of every seed, [seed, *shape]
        self.params = {
            name: nn.Parameter(torch.stack([p[name].detach() for p in per_seed]).to(self.device))
            for name in per_seed[0]
        }
        #: The architecture the stacked weights run through (its own weights are never read).
        self.model = build_model(config.model, **shape, device=self.device)
        self.optimizer, self.scheduler = make_optimizer(self.params.values(), train)
        self.grad_filter = make_filter(
            train.grad_filter,
            alpha=train.grokfast_alpha,
            lamb=train.grokfast_lamb,
            window=train.grokfast_window,
        )
        index = self.task.train_index
        self.train_tokens = self.task.tokens[index].to(self.device)
        self.train_labels = self.task.labels[index].to(self.device)
        self.step = 0

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def logits(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "seed batch d_vocab_out"]:
        """Answer-position logits of every seed (`interp.model.answer_logits`, batched over
        seeds)."""
        return stacked_answer_logits(self.model, self.params, tokens)

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        fn = (
            stablemax_cross_entropy_f64
            if self.config.train.loss == "stablemax"
            else cross_entropy_f64
        )
        return torch.stack([fn(logits[i], labels) for i in range(self.n_seeds)])

    def train_step(self) -> Float[Tensor, " seed"]:
        """One full-batch step of every seed; returns the per-seed training losses."""
        losses = self._loss(self.logits(self.train_tokens), self.train_labels)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        if self.config.train.orthogonal_grad:
            orthogonalize_grads_(self.params, seed_dims=1)
        if self.grad_filter is not None:
            self.grad_filter.apply(self.params)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return losses.detach()

    @torch.inference_mode()
    def accuracy(self, split: str = "test") -> Float[Tensor, " seed"]:
        tokens, labels = (x.to(self.device) for x in self.task.split(split))
        return (self.logits(tokens).argmax(-1) == labels).double().mean(-1)

    def seed_state_dict(self, i: int) -> dict[str, Tensor]:
        """Seed i's weights under the native names (loadable with `interp.model.load_state`)."""
        return {name: param[i].detach().cpu().clone() for name, param in self.params.items()}
