"""Shared fixtures: tiny configs, one real training run per session, a hand-built Fourier model."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from interp.config import ModelConfig, RunConfig, TrainConfig, task_config

# Tiny models are overhead-bound: one thread is faster, and far faster on a busy machine.
torch.set_num_threads(1)


def tiny_config(**overrides) -> RunConfig:
    """A run that trains in seconds: p = 11, one layer, d_model 16. Override with
    section__field=value."""
    config = RunConfig(
        name="tiny",
        task=task_config(operation="add", p=11, train_frac=0.5, split_seed=1),
        model=ModelConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, d_mlp=32, seed=3),
        train=TrainConfig(steps=60, lr=3e-3, weight_decay=1.0, ckpt_every=20, ckpt_log_until=10),
    )
    sections = {"task": {}, "model": {}, "train": {}}
    for key, value in overrides.items():
        section, name = key.split("__")
        sections[section][name] = value
    return replace(
        config,
        task=replace(config.task, **sections["task"]),
        model=replace(config.model, **sections["model"]),
        train=replace(config.train, **sections["train"]),
    )


def walk_config(data: str = "fresh", steps: int = 300) -> RunConfig:
    """A graph-walk run that trains in seconds: 12 nodes, 24 edges, context 8, one layer;
    `data` is "fresh" (a new batch of walks every step) or "fixed" (a 64-walk corpus)."""
    return RunConfig(
        task=task_config(
            "graph_walk",
            n_nodes=12,
            n_edges=24,
            context=8,
            data=data,
            corpus_walks=64,
            eval_walks=64,
        ),
        model=ModelConfig(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64, seed=0),
        train=TrainConfig(
            steps=steps, lr=1e-2, weight_decay=0.0, batch_size=32, ckpt_every=50, ckpt_log_until=0
        ),
    )


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches (`circuits.families.graph_walk.limits`) go to a session folder, not the user's
    ~/.cache."""
    import os

    os.environ.setdefault("INTERP_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A real run folder on disk, trained once per test session through the CLI's trainer."""
    from interp.training import train

    config = tiny_config()
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(config, run_dir, progress=False)
    return run_dir


def randomize_weights(model, std: float = 0.3) -> None:
    """Give every parameter (biases and LayerNorm weights too) non-trivial random values."""
    with torch.no_grad():
        for param in model.original_model.parameters():
            param.normal_(0, std)


def handbuilt_fourier_model(
    p: int, frequencies: list[int], d_model: int = 32, d_mlp: int = 128, n_phases: int = 16
):
    """A 1-layer model whose weights implement the Fourier algorithm for (a + b) mod p by hand.

    Embedding: number x -> cos(w_k x), sin(w_k x) for each key frequency (w_k = 2πk/p).
    Attention: Q = K = 0, so the answer position attends uniformly to a, b and `=`; head 0
    copies the embedding (×3), giving cos(w a) + cos(w b) and sin(w a) + sin(w b).
    MLP: for each k, n_phases neurons ReLU(cos(w a + φ) + cos(w b + φ)); their output
    weights cos(2φ + w c) keep, after averaging over φ, only the cos 2θ harmonic of the ReLU,
    which is ∝ |cos(w(a − b)/2)| cos(w(a + b − c)): the logit of c peaks at c = a + b.
    """
    from interp.model import build_model

    n_k = len(frequencies)
    assert d_model >= 4 * n_k and d_mlp >= n_phases * n_k
    config = ModelConfig(
        n_layers=1, d_model=d_model, n_heads=1, d_head=2 * n_k, d_mlp=d_mlp, seed=0
    )
    model = build_model(config, d_vocab=p + 1, d_vocab_out=p, n_ctx=3)
    native = model.original_model
    block = native.layers[0]
    x = torch.arange(p, dtype=torch.float32)
    with torch.no_grad():
        for param in native.parameters():
            param.zero_()
        for i, k in enumerate(frequencies):
            w = 2 * math.pi * k / p
            native.tok_embed.weight[:p, 2 * i] = torch.cos(w * x)
            native.tok_embed.weight[:p, 2 * i + 1] = torch.sin(w * x)
            # Unembedding reads output dims 2n_k + 2i (cos) and 2n_k + 2i + 1 (sin).
            native.head.weight[:, 2 * n_k + 2 * i] = torch.cos(w * x)
            native.head.weight[:, 2 * n_k + 2 * i + 1] = torch.sin(w * x)
            for j in range(n_phases):
                phi = 2 * math.pi * j / n_phases
                neuron = i * n_phases + j
                block.mlp.fc_in.weight[neuron, 2 * i] = math.cos(phi)
                block.mlp.fc_in.weight[neuron, 2 * i + 1] = -math.sin(phi)
                block.mlp.fc_out.weight[2 * n_k + 2 * i, neuron] = math.cos(2 * phi)
                block.mlp.fc_out.weight[2 * n_k + 2 * i + 1, neuron] = -math.sin(2 * phi)
        eye = torch.eye(2 * n_k)
        block.attn.v.weight[: 2 * n_k, : 2 * n_k] = eye
        block.attn.o.weight[: 2 * n_k, : 2 * n_k] = 3 * eye
    model.eval()
    return model
