"""T16: SIGTERM to a worker in the middle of its jobs (a rolling update, a scale-down)."""

from __future__ import annotations

import signal
import time

import pytest
from faults import checks, harness
from faults.harness import Fault

ACK_WAIT = 30.0  # long, so a hand-back (immediate) cannot be mistaken for a redelivery, even
# when process start-ups on a loaded machine take several seconds
GRACE = 1.0
STEP = 0.5  # 4 s renders: longer than the grace period
REDELIVERED = "SELECT count(*) FROM tasks.subtasks WHERE last_delivery >= 2"


@pytest.mark.long
@pytest.mark.timeout(120)
def test_sigterm_hands_back_in_flight_jobs_and_exits_0(fault: Fault) -> None:
    """A worker told to stop with two 4 s renders in flight stops fetching (it starts no
    other job), gives its jobs GRACE_PERIOD_SECONDS (1 s), naks them without delay, and exits
    0 within the grace period plus a little. A new worker starts the handed-back jobs at
    once, well before ack_wait (30 s) would have redelivered them, and all 4 succeed once."""
    env = {**harness.slow(STEP), "WORKER_CONCURRENCY": "2", "GRACE_PERIOD_SECONDS": str(GRACE)}
    kiln = fault.start(workers=1, worker_env=env, extra_env={"JOB_ACK_WAIT_SECONDS": str(ACK_WAIT)})
    leaving = kiln.workers[0]
    client = fault.client()
    # No job can be delivered before it exists, so no ack_wait redelivery can happen before
    # created + ACK_WAIT (heartbeats only push it later): the bound for "at once".
    created = time.monotonic()
    client.create(4)
    checks.wait_until(
        lambda: fault.states().get("running") == 2, within=30, what="two jobs running"
    )
    leaving.signal(signal.SIGTERM)
    asked = time.monotonic()
    assert leaving.process is not None
    code = leaving.process.wait(timeout=GRACE + 10)
    exit_seconds = time.monotonic() - asked
    assert code == 0, leaving.log_tail()
    # RELIABILITY T16: in-flight jobs are handed back within the grace period (plus the
    # process's own exit), so the exit is bounded by it.
    assert exit_seconds < GRACE + 4, exit_seconds
    assert leaving.log_path.read_text().count('"job_started"') == 2, "fetched after SIGTERM"
    fault.add_worker(env)
    joined = time.monotonic()
    taken = checks.wait_until(
        lambda: checks.scalar(fault.database_url, REDELIVERED) == 2,
        within=ACK_WAIT,
        what="handed-back jobs restarted",
    )
    restarted = joined + taken
    assert restarted < created + ACK_WAIT, (
        f"restarted {restarted - created:.2f}s after the jobs were created: an ack_wait "
        f"({ACK_WAIT}s) redelivery, not the hand-back"
    )
    fault.wait_finished(within=60)
    summary = fault.check()
    assert summary.states == {"succeeded": 4}
    assert summary.images == 4
    assert summary.max_attempt == 1
    harness.record(
        "T16", grace_seconds=GRACE, exit_code=code, exit_seconds=round(exit_seconds, 2),
        restarted_on_new_worker_seconds=round(taken, 2),
        finished_seconds=round(time.monotonic() - joined, 2), ack_wait=ACK_WAIT,
    )  # fmt: skip
