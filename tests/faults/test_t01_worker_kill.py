"""T1: a worker killed (-9) while holding many started jobs; another worker takes over."""

from __future__ import annotations

import time

import pytest
from faults import checks, harness
from faults.harness import Fault

JOBS = 12
STEP = 0.2  # about 1.6 s per render


@pytest.mark.timeout(120)
def test_killed_worker_jobs_finish_once_on_another_worker(fault: Fault) -> None:
    """kill -9 of a worker running 6 jobs loses none of them: after ack_wait JetStream hands
    them to a new worker (same attempt, higher delivery), every subtask succeeds exactly once
    with exactly one image, within ack_wait + a few seconds + render time."""
    env = {**harness.slow(STEP), "WORKER_CONCURRENCY": "6"}
    kiln = fault.start(workers=1, worker_env=env)
    client = fault.client()
    task = client.create(JOBS)
    checks.wait_until(
        lambda: fault.states(task.id).get("running", 0) >= 6, within=30, what="6 jobs running"
    )
    kiln.workers[0].kill()
    killed = time.monotonic()
    fault.add_worker(env)
    took = fault.wait_finished(within=60)
    recovery = time.monotonic() - killed
    summary = fault.check()
    assert summary.states == {"succeeded": JOBS}
    assert summary.images == JOBS
    # Redelivered, not re-created: the attempt fence did not move.
    assert summary.max_attempt == 1
    assert summary.max_delivery >= 2
    render = harness.PROCEDURAL_STEPS * STEP
    # Two rounds of 6 renders on the new worker after the redelivery.
    assert recovery < harness.ACK_WAIT + 6 + 2 * render, recovery
    harness.record(
        "T1", recovery_seconds=round(recovery, 2), waited=round(took, 2),
        max_delivery=summary.max_delivery, images=summary.images,
    )  # fmt: skip
