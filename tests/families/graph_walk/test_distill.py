"""Distillation on a fixed corpus: a teacher's walks follow the teacher (a hand-built Markov
teacher's walks never leave its chain), ensembles sample from the combination they name,
batches mix corpus and teacher walks in the configured fraction from one seeded stream that
every fraction shares, a distilled run resumes exactly, and a missing, mismatched or changed
teacher is a clear error."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import interp
from circuits.families.graph_walk import distill
from circuits.families.graph_walk.task import walk_graph
from interp.cli import main
from interp.config import ModelConfig
from interp.model import build_model
from interp.tasks import build_task
from tests.conftest import walk_config
from tests.families.graph_walk.markov import markov_teacher


def transition_counts(walks: torch.Tensor, n: int) -> np.ndarray:
    pairs = walks[:, :-1] * n + walks[:, 1:]
    return torch.bincount(pairs.reshape(-1), minlength=n * n).reshape(n, n).numpy()


def test_a_markov_teachers_walks_follow_its_chain_and_ensembles_their_combination():
    graph = walk_graph(walk_config("fixed").task)
    P = graph.transition
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(graph.n, (4000,), generator=generator)
    teacher = distill.Teacher((markov_teacher(P),), (), "logits")
    walks = teacher.sample(starts, 9, generator)
    assert walks.shape == (4000, 9) and torch.equal(walks[:, 0], starts)
    counts = transition_counts(walks, graph.n)
    assert counts[P == 0].sum() == 0  # never a step off the graph
    empirical = counts / counts.sum(1, keepdims=True)
    assert np.abs(empirical - P).max() < 0.03  # ~32k transitions, ~2.7k per node

    # Two chains combined: the mean of log-probabilities renormalized, or the mixture.
    uniform = np.full_like(P, 1 / graph.n)
    pair = (markov_teacher(P), markov_teacher(uniform))
    mixture = (P + uniform) / 2
    geometric = np.where(P > 0, np.sqrt(P * uniform), 0.0)
    geometric = geometric / geometric.sum(1, keepdims=True)
    for combine, expected in (("probs", mixture), ("logits", geometric)):
        walks = distill.Teacher(pair, (), combine).sample(starts, 9, generator)
        counts = transition_counts(walks, graph.n)
        assert np.abs(counts / counts.sum(1, keepdims=True) - expected).max() < 0.04, combine


def test_the_cached_decoder_equals_the_full_forward_at_every_position():
    from interp.model import CachedDecoder, sequence_logits

    config = ModelConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, normalization="LN", seed=3
    )
    model = build_model(config, d_vocab=12, d_vocab_out=12, n_ctx=8, device="cpu")
    tokens = torch.randint(12, (5, 8), generator=torch.Generator().manual_seed(1))
    decoder = CachedDecoder(model, 5)
    stepped = torch.stack([decoder.step(tokens[:, t]) for t in range(8)], 1)
    assert torch.allclose(stepped, sequence_logits(model, tokens).detach(), atol=1e-5)
    with pytest.raises(ValueError, match="context"):
        decoder.step(tokens[:, 0])


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("distill") / "teacher"
    interp.train(walk_config("fixed", steps=150), path, progress=False)
    return path


def distilled(teacher, frac: float, steps: int = 100, seed: int = 0):
    config = walk_config("fixed", steps=steps)
    task = replace(config.task, teacher=str(teacher), teacher_frac=frac)
    return replace(config, task=task, train=replace(config.train, seed=seed))


def test_batches_mix_corpus_and_teacher_walks_from_one_stream_every_fraction_shares(teacher_run):
    samplers = {}
    for frac in (0.5, 1.0):
        config = distilled(teacher_run, frac)
        task = build_task(config.task)
        samplers[frac] = distill.DistilledWalks(task, 32, 0, torch.device("cpu"))
    half, full = samplers[0.5], samplers[1.0]
    pair = replace(distilled(teacher_run, 0.5).task, teacher=f"{teacher_run}@50+{teacher_run}")
    teacher = distill.load_teacher(pair)
    assert len(teacher.models) == 2 and teacher.checkpoints[0] != teacher.checkpoints[1]
    assert half.stream.key == full.stream.key  # the same walks, cached once
    corpus = build_task(walk_config("fixed").task).split("train")[0]
    rows = {tuple(r) for r in corpus.tolist()}
    tokens, labels = half.next_batch()
    assert tokens.shape == (32, 8) and torch.equal(tokens[:, 1:], labels[:, :-1])
    assert all(tuple(r) in rows for r in tokens[:16].tolist())  # the corpus half
    synthetic, _ = full.next_batch()
    assert torch.equal(tokens[16:], synthetic[:16])  # the stream's first walks
    assert torch.equal(half.next_batch()[0][16:], synthetic[16:])
    # The teacher's walks start where the corpus walks start, in proportion.
    stream = full.stream.take(0, distill.CHUNK_WALKS)
    starts = np.bincount(stream[:, 0].numpy(), minlength=12) / distill.CHUNK_WALKS
    corpus_starts = np.bincount(corpus[:, 0].numpy(), minlength=12) / len(corpus)
    assert np.abs(starts - corpus_starts).max() < 0.05
    assert not (set(np.flatnonzero(starts)) - set(np.flatnonzero(corpus_starts)))


def test_a_distilled_run_resumes_exactly_and_a_damaged_cache_is_regenerated(
    teacher_run, tmp_path, capsys
):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    interp.train(distilled(teacher_run, 0.75, steps=100), whole, progress=False)
    interp.train(distilled(teacher_run, 0.75, steps=50), cut, progress=False)
    config = json.loads((cut / "config.json").read_text())
    assert config["task"]["teacher_frac"] == 0.75
    config["train"]["steps"] = 100
    (cut / "config.json").write_text(json.dumps(config))
    # A damaged chunk in the cache is generated again, to the same walks.
    sampler = distill.DistilledWalks(
        build_task(distilled(teacher_run, 0.75).task), 32, 0, torch.device("cpu")
    )
    before = sampler.stream.take(0, 40)
    chunk = sampler.stream.folder / "chunk_000000.safetensors"
    chunk.write_bytes(b"not safetensors")
    interp.train(None, cut, resume=True, progress=False)
    assert "unreadable" in capsys.readouterr().err

    def strip(path):
        text = (path / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(r).items() if k != "time_s"} for r in text]

    assert strip(cut) == strip(whole)
    fresh = distill.TeacherStream(sampler.stream.teacher, sampler.stream.start_counts, 9, 0)
    assert torch.equal(fresh.take(0, 40), before)


def test_missing_mismatched_or_changed_teachers_are_refused(teacher_run, tmp_path, capsys):
    from interp.config_base import ConfigError

    with pytest.raises(ConfigError, match="task.teacher: required"):
        replace(walk_config("fixed").task, teacher_frac=0.5)
    with pytest.raises(ConfigError, match="task.data=fixed"):
        replace(walk_config("fresh").task, teacher=str(teacher_run), teacher_frac=0.5)
    with pytest.raises(ConfigError, match="teacher_frac: must be in"):
        replace(walk_config("fixed").task, teacher=str(teacher_run), teacher_frac=1.5)

    missing = distilled(tmp_path / "nowhere", 0.5)
    with pytest.raises(distill.TeacherError, match="nowhere: not a run folder"):
        interp.train(missing, tmp_path / "a", progress=False)
    other = replace(
        distilled(teacher_run, 0.5), task=replace(distilled(teacher_run, 0.5).task, n_edges=30)
    )
    with pytest.raises(distill.TeacherError, match="task.n_edges is 24 there, 30 here"):
        interp.train(other, tmp_path / "b", progress=False)

    # A teacher retrained after the student started: resuming would read other walks.
    teacher = tmp_path / "teacher"
    interp.train(walk_config("fixed", steps=50), teacher, progress=False)
    student = tmp_path / "student"
    interp.train(distilled(teacher, 0.5, steps=50), student, progress=False)
    retrained = replace(walk_config("fixed", steps=50), model=replace(walk_config().model, seed=1))
    interp.train(retrained, teacher, overwrite=True, progress=False)
    config = json.loads((student / "config.json").read_text())
    config["train"]["steps"] = 100
    (student / "config.json").write_text(json.dumps(config))
    assert main(["train", "--resume", "--out", str(student), "-q"]) == 2
    assert "differ from those this run started with" in capsys.readouterr().err
