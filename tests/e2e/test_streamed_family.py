"""The family interface serves next-token families with streamed data: a toy random-walk
family defined here trains on fresh walks drawn at every step (its own sampler), with a
full-sequence causal loss (its own forward), and a run stopped between checkpoints resumes
to exactly the weights and metrics of an uninterrupted one (the sampler's state is saved
with the trainer state)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
import torch

from circuits.families.base import AnalyzedFamily
from interp import training
from interp.config import ModelConfig, RunConfig, TrainConfig
from interp.config_base import TaskConfig
from interp.registry import register
from interp.sampling import BatchSampler


@dataclass(frozen=True)
class WalkTask(TaskConfig):
    """Random walks on a cycle of `n_nodes` nodes (each step ±1); predict every next node."""

    kind = "toy_walk"
    n_nodes: int = 7
    length: int = 6
    n_eval: int = 64

    @property
    def d_vocab(self) -> int:
        return self.n_nodes

    @property
    def d_vocab_out(self) -> int:
        return self.n_nodes

    @property
    def n_ctx(self) -> int:
        return self.length


def walks(
    config: WalkTask, n: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.randint(config.n_nodes, (n, 1), generator=generator)
    moves = torch.randint(2, (n, config.length), generator=generator) * 2 - 1
    nodes = torch.cat([start, start + moves.cumsum(dim=1)], dim=1) % config.n_nodes
    return nodes[:, :-1], nodes[:, 1:]  # tokens, next node at every position


class StreamedWalks(BatchSampler):
    """Fresh walks at every step from a seeded generator: nothing is stored but its state."""

    def __init__(self, config: WalkTask, batch_size: int, seed: int):
        self.config, self.batch_size = config, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self):
        return walks(self.config, self.batch_size, self.generator)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return {"walks.rng": self.generator.get_state()}, {}

    def restore(self, tensors, meta) -> None:
        self.generator.set_state(tensors["walks.rng"])


class WalkFamily(AnalyzedFamily):
    kind = "toy_walk"
    config_class = WalkTask

    def build_task(self, config: WalkTask):
        from interp.tasks.base import TaskData

        # Held-out walks for evaluation only; training draws its own (the sampler).
        tokens, labels = walks(
            config, 2 * config.n_eval, torch.Generator().manual_seed(config.split_seed)
        )
        index = torch.arange(2 * config.n_eval)
        return TaskData(
            tokens=tokens,
            labels=labels,
            splits={"train": index[: config.n_eval], "test": index[config.n_eval :]},
        )

    def forward(self, model, tokens):
        logits = model(tokens)  # the bridge's full-sequence causal forward
        return logits.reshape(-1, logits.shape[-1])

    def sampler(self, task, train, device):
        return StreamedWalks(self.config_of(task), train.batch_size, train.seed)

    def config_of(self, task) -> WalkTask:
        return WalkTask(n_nodes=task.tokens.max().item() + 1, length=task.tokens.shape[1])


register(WalkFamily())


def streamed_config(**train) -> RunConfig:
    return RunConfig(
        task=WalkTask(n_nodes=7, length=6, split_seed=0),
        model=ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=0),
        train=TrainConfig(
            **{
                "steps": 40,
                "lr": 1e-2,
                "batch_size": 16,
                "ckpt_every": 10,
                "ckpt_log_until": 0,
                **train,
            }
        ),
    )


class Interrupted(Exception):
    pass


def test_streamed_next_token_family_learns_and_resumes_exactly(tmp_path, monkeypatch):
    whole = training.train(streamed_config(), tmp_path / "whole", progress=False)
    rows = [
        json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    ]
    # Every position's next node is one of two neighbours: a model that learned the walk
    # reaches ~50 % (chance over 7 nodes is 14 %).
    assert rows[0]["test_acc"] < 0.3 and rows[-1]["test_acc"] > 0.4

    original = training.Trainer.train_step

    def train_step(self):
        if self.step == 25:  # between checkpoints 20 and 30
            raise Interrupted
        return original(self)

    with monkeypatch.context() as patch:
        patch.setattr(training.Trainer, "train_step", train_step)
        with pytest.raises(Interrupted):
            training.train(streamed_config(), tmp_path / "cut", progress=False)
    resumed = training.resume(tmp_path / "cut", progress=False)
    assert resumed.final_step == whole.final_step == 40

    def without_time(path):
        return [
            {k: v for k, v in json.loads(line).items() if k != "time_s"}
            for line in (path / "metrics.jsonl").read_text().splitlines()
        ]

    assert without_time(tmp_path / "cut") == without_time(tmp_path / "whole")
    manifest = [
        json.loads((d / "manifest.json").read_text())["checkpoints"]
        for d in (tmp_path / "cut", tmp_path / "whole")
    ]
    assert [e["sha256"] for e in manifest[0]] == [e["sha256"] for e in manifest[1]]
