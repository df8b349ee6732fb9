"""The streamed map over a run's checkpoints that every analysis shares: each checkpoint
loaded once into one model object per worker, damaged ones skipped and reported."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from itertools import chain

import torch

from circuits.pipeline.figure_steps import SliderSteps
from interp.runs import Run


def map_checkpoints(
    run: Run,
    steps: list[int],
    make_analyze_one,
    workers: int = 1,
    progress: str | None = None,
    done: int = 0,
    figure_steps: SliderSteps | None = None,
) -> tuple[list, list[tuple[str, str]]]:
    """analyze_one(model, step) over every checkpoint that loads (`Run.iter_models`); the others
    are collected as (file, reason) instead of aborting the run. `done` checkpoints were
    analyzed before (they count in the progress bar); `figure_steps` learns of the skipped.

    `make_analyze_one()` is called once per worker, in this thread (model construction is not
    thread-safe), so each worker gets its own state (e.g. a random-init baseline model).
    With `workers` > 1 the checkpoints are dealt round-robin to that many threads, each with
    its own model object and torch running one intra-op thread: torch releases the GIL inside
    its kernels, and whole checkpoints in parallel scale better than splitting each small op
    over cores. Memory stays flat: `workers` models and activation sets at any time.
    """
    from tqdm.auto import tqdm

    skipped: list[tuple[str, str]] = []
    bar = tqdm(
        total=len(steps) + done,
        desc=progress,
        unit="ckpt",
        disable=progress is None,
        leave=False,
        dynamic_ncols=True,
    )
    bar.update(done)

    def on_error(item) -> None:
        skipped.append((str(item.path), item.reason))
        if figure_steps is not None:
            figure_steps.skipped(item.step)
        bar.update(1)

    def counted(analyze_one):
        def run_one(model, step: int):
            result = analyze_one(model, step)
            bar.update(1)  # tqdm serializes updates with its own lock
            return result

        return run_one

    workers = max(1, min(workers, len(steps) // 2))
    if workers == 1:
        analyze_one = counted(make_analyze_one())
        try:
            results = [
                analyze_one(model, step)
                for step, model in run.iter_models(steps, on_error=on_error)
            ]
        finally:
            bar.close()
    else:
        jobs = [
            (steps[i::workers], run.new_model(), counted(make_analyze_one()))
            for i in range(workers)
        ]

        def shard(job) -> list:
            shard_steps, model, analyze_one = job
            return [
                analyze_one(m, step)
                for step, m in run.iter_models(shard_steps, on_error=on_error, model=model)
            ]

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="analyze") as pool:
                results = sorted(chain.from_iterable(pool.map(shard, jobs)), key=lambda r: r.step)
        finally:
            torch.set_num_threads(threads)
            bar.close()
        skipped.sort()
    return results, skipped
