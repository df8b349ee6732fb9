"""The local backend: persistent worker processes on this machine (the default; no server).

Each worker is a spawned process that sets its torch threads (one by default) and imports
TransformerLens once, then trains the runs it is sent one after another
(`interp.sweep.worker.execute`). The coordinator talks to each worker over its own pipe and
watches its process: a worker that dies mid-run (killed, out of memory, a crash in native
code) fails that run only, with its exit code, and is replaced. Workers ignore Ctrl-C: the
coordinator stops them and the interrupted runs are continued by `--resume`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from typing import Any

Job = dict[str, Any]


def _exit_with_parent(parent: int) -> None:
    """A worker whose coordinator died (killed, not stopped) exits too, instead of training
    on as an orphan that would hold a run's writer lock against `--resume`."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _worker_main(
    conn, slot: int, threads: int, progress: bool, lock, parent: int, execute: str
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    import importlib

    from tqdm import tqdm

    from interp import console
    from interp.sweep import worker

    if lock is not None:
        tqdm.set_lock(lock)
    worker.warm_up(threads)
    module, _, name = execute.partition(":")
    run_job = getattr(importlib.import_module(module), name)
    conn.send(("ready", slot, None))
    while True:
        job = conn.recv()
        if job is None:
            return
        console.bar_options.update(position=slot + 1, desc=job["name"][:30])
        conn.send(("done", job["name"], run_job(job, progress=progress)))


class LocalPool:
    """`workers` persistent processes, `threads` torch threads each, running `execute`
    ("module:function", called as function(job, progress=...); the default trains). With
    `keep=True` the workers outlive `run` and serve the next call (a search runs its rounds
    on one pool, paying TransformerLens's import once); `close()` ends them."""

    def __init__(
        self,
        workers: int,
        threads: int = 1,
        progress: bool = False,
        execute: str = "interp.sweep.worker:execute",
        keep: bool = False,
    ):
        self.workers, self.threads, self.progress = workers, threads, progress
        self.execute, self.keep = execute, keep
        self._ctx = mp.get_context("spawn")
        self._lock = self._ctx.RLock() if progress else None
        self._procs: dict[int, Any] = {}
        self._conns: dict[int, Any] = {}
        #: worker processes started so far (replacements of dead workers included)
        self.spawned = 0

    def _spawn(self, slot: int) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(
            target=_worker_main,
            args=(child, slot, self.threads, self.progress, self._lock, os.getpid(), self.execute),
            daemon=True,
            name=f"interp-sweep-{slot}",
        )
        proc.start()
        self.spawned += 1
        child.close()
        self._procs[slot], self._conns[slot] = proc, parent

    def run(
        self,
        jobs: list[Job],
        on_start: Callable[[Job], None],
        on_done: Callable[[Job, dict[str, Any]], None],
    ) -> None:
        """Run every job; `on_start`/`on_done` are called in this process, in order."""
        queue = list(jobs)
        busy: dict[int, Job] = {}
        idle: list[int] = [s for s in self._procs if self._procs[s].is_alive()]  # kept ones
        started: set[int] = set(idle)
        ok = False
        try:
            for slot in range(min(self.workers, len(queue))):
                if slot not in self._procs:
                    self._spawn(slot)
            while queue or busy:
                waitables = {self._conns[s]: s for s in self._conns}
                sentinels = {self._procs[s].sentinel: s for s in self._procs}
                for ready in wait([*waitables, *sentinels], timeout=1.0):
                    if ready in waitables:
                        slot = waitables[ready]
                        try:
                            kind, _, result = ready.recv()
                        except (EOFError, OSError):
                            continue  # the sentinel reports the death
                        if kind == "done":
                            on_done(busy.pop(slot), result)
                        started.add(slot)
                        idle.append(slot)
                    else:
                        slot = sentinels[ready]
                        self._procs[slot].join()
                        code = self._procs.pop(slot).exitcode
                        self._conns.pop(slot).close()
                        if slot in idle:
                            idle.remove(slot)
                        if slot not in started and slot not in busy:
                            raise RuntimeError(
                                f"a sweep worker process could not start (exit code {code}). "
                                "Workers are spawned and import the calling script again: "
                                "from a script, call interp.run_sweep under `if __name__ == "
                                "'__main__':`; otherwise run one run with `interp train` to "
                                "see why"
                            )
                        started.discard(slot)
                        if slot in busy:
                            on_done(
                                busy.pop(slot),
                                {
                                    "status": "failed",
                                    "error": f"the worker process died (exit code {code})",
                                },
                            )
                        if queue:
                            self._spawn(slot)
                while idle and queue:
                    slot, job = idle.pop(), queue.pop(0)
                    busy[slot] = job
                    on_start(job)
                    self._conns[slot].send(job)
                if not queue and not self.keep:  # nothing left to send: let idle workers go
                    for slot in idle:
                        self._conns[slot].send(None)
                    idle.clear()
            ok = True
        finally:
            if not (ok and self.keep):
                self.close()

    def close(self) -> None:
        for slot, conn in list(self._conns.items()):
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for proc in self._procs.values():
            proc.join(timeout=0.5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        self._procs.clear()
        self._conns.clear()
