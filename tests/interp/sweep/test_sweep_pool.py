"""The local pool isolates a worker that dies mid-run: that run fails with the exit code, a
replacement worker takes the remaining runs, and the others finish."""

from __future__ import annotations

import os
import time

from interp.sweep.local import LocalPool


def crash_on_b(job, progress=False):
    """Run "b" kills its worker process (as an out-of-memory kill or a native crash would)."""
    if job["name"] == "b":
        os._exit(3)
    time.sleep(0.5)  # runs outlast b's death, so runs are still queued when it is noticed
    return {"status": "done", "pid": os.getpid()}


def test_a_dead_worker_fails_only_its_run_and_is_replaced():
    jobs = [{"name": name} for name in "abcde"]
    started, results = [], {}
    pool = LocalPool(2, execute="tests.interp.sweep.test_sweep_pool:crash_on_b")
    pool.run(
        jobs,
        lambda job: started.append(job["name"]),
        lambda job, r: results.update({job["name"]: r}),
    )
    assert sorted(started) == list("abcde") and sorted(results) == list("abcde")
    assert results["b"]["status"] == "failed" and "exit code 3" in results["b"]["error"]
    assert all(results[n]["status"] == "done" for n in "acde")
    # The dead worker was replaced while runs were queued (which worker then takes them
    # depends on how fast the replacement starts on a loaded machine).
    assert pool.spawned == 3
