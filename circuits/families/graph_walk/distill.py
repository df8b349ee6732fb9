"""Distillation on a fixed corpus (Kim et al. 2025, ANCHORS §5): training batches mixed from
the corpus and from walks a teacher generates.

**The teacher** (`task.teacher`): one run folder or several joined by "+", each
"RUN[@STEP|@best]" (default: the last checkpoint, as `interp ensemble`); several are one
predictor, their next-node distributions combined by `task.teacher_combine` (the mean of the
log-probabilities, renormalized, or the mean of the probabilities: `ensemble`). A teacher
must have been trained on the student's task (graph, corpus, held-out walks: every field but
the distillation fields); otherwise `TeacherError` names the first difference.

**Its walks** are sampled autoregressively at temperature 1: the first node from the
corpus's start distribution (the empirical distribution of the corpus walks' first nodes),
each next node from the teacher's distribution given the walk so far (`interp.model.
CachedDecoder`). They form one endless stream, generated in chunks of `CHUNK_WALKS`
walks; chunk c is drawn from its own generator, seeded by (train.seed, c), so a student's
synthetic walks depend only on the teacher, the corpus and its seed, not on its mixing
fraction: students of every fraction read prefixes of the same stream, and a chunk is
generated once and cached on disk (`interp.cache`, `teacher_walks/<key>/`, keyed by the
teacher checkpoints' sha256, the combination, the corpus's start nodes and the seed). An
unreadable cache file is regenerated.

**A batch** of `train.batch_size` walks holds round(teacher_frac × batch) teacher walks, the
next in the stream, and the rest from the corpus in reshuffled minibatches
(`interp.sampling.ShuffledBatches`, seeded by train.seed as in an undistilled run). The
sampler's state is the corpus sampler's and the stream position (the chunk's generator is
its seed and index), saved with every checkpoint: a resumed run draws exactly the walks an
uninterrupted one would. A resumed run whose teacher checkpoints changed is refused.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from interp.config_base import ConfigError
from interp.sampling import BatchSampler, ShuffledBatches

#: Walks per generated chunk of the teacher's stream (part of the cache key).
CHUNK_WALKS = 2048
#: Bump when the generated walks change for the same key (old cache entries are not reused).
#: (Combining the members through `ensemble.combined_log_probs` left it at 1: a chunk of the
#: 8-member study teacher's stream came out identical to the one cached before.)
STREAM_VERSION = 1
CURSOR_KEY, TEACHER_KEY = "teacher.cursor", "teacher.key"


class TeacherError(ConfigError):
    """A teacher that is missing, unreadable, trained on another task, or changed."""


@dataclass(frozen=True)
class Teacher:
    """The loaded teacher: its members' models and what identifies them."""

    models: tuple[Any, ...]
    #: per member: "RUN@STEP sha256" of the checkpoint read
    checkpoints: tuple[str, ...]
    combine: str

    @torch.inference_mode()
    def sample(self, starts: Tensor, length: int, generator: torch.Generator) -> Tensor:
        """[len(starts), length] walks from the start nodes, each next node sampled at
        temperature 1 from the combined members' distribution given the walk so far."""
        from circuits.families.graph_walk.ensemble import combined_log_probs
        from interp.model import CachedDecoder

        decoders = [CachedDecoder(model, len(starts)) for model in self.models]
        walk = [starts]
        for _ in range(length - 1):
            logs = torch.stack([torch.log_softmax(d.step(walk[-1]).double(), -1) for d in decoders])
            probs = combined_log_probs(logs, self.combine).exp()
            walk.append(torch.multinomial(probs, 1, generator=generator)[:, 0])
        return torch.stack(walk, 1)


def load_teacher(config) -> Teacher:
    """The teacher `config.teacher` names (a GraphWalkTask), checked against `config`."""
    from circuits.families.graph_walk.ensemble import member_step, parse_member
    from circuits.families.graph_walk.task import data_differences, data_fields
    from interp.runs import RunError, load_run, read_manifest

    specs = [s.strip() for s in config.teacher.split("+") if s.strip()]
    if not specs:
        raise TeacherError("task.teacher: no run folder given")
    student = data_fields(config)
    models, checkpoints = [], []
    for spec in specs:
        path, which = parse_member(spec)
        if not (path / "config.json").is_file():
            raise TeacherError(f"task.teacher: {path}: not a run folder (no config.json)")
        try:
            run = load_run(path)
            step = member_step(run, which)
            digest = {e["step"]: e["sha256"] for e in read_manifest(path)}[step]
            model = run.model_at(step)
        except (RunError, ConfigError, KeyError) as exc:
            raise TeacherError(f"task.teacher: {spec}: {exc}") from None
        theirs = data_fields(run.config.task)
        differing = data_differences(config, run.config.task)
        if differing:
            name = differing[0]
            raise TeacherError(
                f"task.teacher: {path} was trained on another task: task.{name} is "
                f"{theirs.get(name)!r} there, {student.get(name)!r} here (a teacher must share "
                "the student's graph, corpus and held-out walks)"
            )
        model.eval()
        models.append(model)
        checkpoints.append(f"{path.resolve()}@{step} {digest}")
    return Teacher(tuple(models), tuple(checkpoints), config.teacher_combine)


class TeacherStream:
    """The teacher's walks as one endless stream of seeded, cached chunks (module docstring)."""

    def __init__(self, teacher: Teacher, starts: Tensor, length: int, seed: int):
        from interp.cache import cache_dir

        self.teacher, self.length, self.seed = teacher, length, seed
        #: the corpus's start distribution: counts of the corpus walks' first nodes
        self.start_counts = starts.double()
        key = {
            "teacher": list(teacher.checkpoints),
            "combine": teacher.combine,
            "starts": self.start_counts.tolist(),
            "length": length,
            "seed": seed,
            "chunk": CHUNK_WALKS,
            "version": STREAM_VERSION,
        }
        self.key = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
        self.folder = cache_dir("teacher_walks") / self.key
        self._chunk: tuple[int, Tensor] | None = None

    def chunk(self, index: int) -> Tensor:
        """Chunk `index` ([CHUNK_WALKS, length]): from memory, the cache, or generated."""
        if self._chunk is not None and self._chunk[0] == index:
            return self._chunk[1]
        from interp.runs import RunError, load_tensors, save_tensors

        path = self.folder / f"chunk_{index:06d}.safetensors"
        walks = None
        if path.exists():
            try:
                walks = load_tensors(path)["walks"]
            except (RunError, KeyError) as exc:
                print(
                    f"teacher walks: {path}: unreadable ({exc}); generating again", file=sys.stderr
                )
        if walks is None or walks.shape != (CHUNK_WALKS, self.length):
            seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(seed)
            starts = torch.multinomial(self.start_counts, CHUNK_WALKS, True, generator=generator)
            walks = self.teacher.sample(starts, self.length, generator)
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                save_tensors(path, {"walks": walks})
            except OSError as exc:
                print(f"teacher walks: cannot cache {path} ({exc})", file=sys.stderr)
        self._chunk = (index, walks)
        return walks

    def take(self, start: int, n: int) -> Tensor:
        """Walks start … start + n − 1 of the stream."""
        parts, position = [], start
        while position < start + n:
            index, offset = divmod(position, CHUNK_WALKS)
            count = min(CHUNK_WALKS - offset, start + n - position)
            parts.append(self.chunk(index)[offset : offset + count])
            position += count
        return torch.cat(parts)


class DistilledWalks(BatchSampler):
    """Batches of corpus walks and teacher walks (module docstring)."""

    def __init__(self, task, batch_size: int, seed: int, device):
        config = task.config
        if batch_size <= 0:
            raise TeacherError(
                "train.batch_size: distillation mixes walks per minibatch; set a batch size > 0"
            )
        self.n_teacher = round(config.teacher_frac * batch_size)
        self.device = device
        tokens, labels = task.split("train")
        self.real = (
            ShuffledBatches(tokens, labels, batch_size - self.n_teacher, seed, device)
            if self.n_teacher < batch_size
            else None
        )
        starts = torch.bincount(tokens[:, 0], minlength=config.d_vocab)
        self.stream = TeacherStream(load_teacher(config), starts, config.context + 1, seed)
        self.cursor = 0

    def next_batch(self) -> tuple[Tensor, Tensor]:
        parts = [self.real.next_batch()] if self.real is not None else []
        if self.n_teacher:
            walks = self.stream.take(self.cursor, self.n_teacher).to(self.device)
            self.cursor += self.n_teacher
            parts.append((walks[:, :-1], walks[:, 1:]))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors, meta = self.real.state() if self.real is not None else ({}, {})
        return tensors, {**meta, CURSOR_KEY: self.cursor, TEACHER_KEY: self.stream.key}

    def restore(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        if meta.get(TEACHER_KEY) != self.stream.key:
            raise TeacherError(
                "task.teacher: the teacher's checkpoints, combination or corpus differ from "
                f"those this run started with (stream {meta.get(TEACHER_KEY)} saved, "
                f"{self.stream.key} now); resuming would train on other walks"
            )
        if self.real is not None:
            self.real.restore(tensors, meta)
        self.cursor = int(meta[CURSOR_KEY])
