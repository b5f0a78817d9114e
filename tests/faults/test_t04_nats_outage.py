"""T4: nats-server killed (-9) with a 1,000-job backlog and jobs in flight, then restarted."""

from __future__ import annotations

import time

import pytest
from faults import checks, harness
from faults.harness import Fault

BACKLOG = 1000
DURING = 50
UNSENT = (
    "SELECT count(*) FROM tasks.outbox o JOIN tasks.tasks t ON t.id = o.task_id"
    " WHERE o.sent_time IS NULL AND t.task_name = %s"
)
PUBLISH_BOUND = 5.0
"""G4: a backlog made during an outage is published within 5 s of NATS's return."""


def _unsent(fault: Fault, name: str) -> int:
    return int(checks.scalar(fault.database_url, UNSENT, name))


@pytest.mark.long
@pytest.mark.timeout(300)
def test_nats_crash_loses_nothing(fault: Fault) -> None:
    """kill -9 of nats-server while 1,000 jobs sit in the stream and some render: CreateTask
    still works during the outage (it never touches NATS), and after the restart every one
    of the 1,050 subtasks succeeds exactly once with one image, without the reconciler
    (left at its 15-minute default) having to re-drive anything."""
    # A window above the backlog: otherwise the outage's jobs wait, by design, until
    # jobs of the backlog finish and free room in the per-queue window (1,000 by default).
    kiln = fault.start(
        workers=2,
        worker_env={"WORKER_CONCURRENCY": "4"},
        extra_env={"TASKS_DISPATCH_WINDOW": "5000"},
    )
    client = fault.client()
    client.create(BACKLOG, name="backlog")
    checks.wait_until(lambda: _unsent(fault, "backlog") == 0, within=30, what="backlog sent")
    checks.wait_until(
        lambda: fault.states().get("running", 0) > 0, within=30, what="jobs in flight"
    )
    at_kill = fault.states()
    fault.nats.kill()
    asked = time.monotonic()
    client.create(DURING, name="during-outage")
    create_seconds = time.monotonic() - asked
    time.sleep(1.0)
    assert _unsent(fault, "during-outage") == DURING
    fault.nats.restart()
    restarted = time.monotonic()
    published = checks.wait_until(
        lambda: _unsent(fault, "during-outage") == 0, within=30, what="outage jobs published"
    )
    assert published <= PUBLISH_BOUND, published
    fault.wait_finished(within=240)
    drained = time.monotonic() - restarted
    summary = fault.check()
    assert summary.states == {"succeeded": BACKLOG + DURING}
    assert summary.images == BACKLOG + DURING
    assert summary.max_generation == 0, "nothing was lost, so nothing is re-published"
    assert all(w.process is not None and w.process.poll() is None for w in kiln.workers)
    harness.record(
        "T4", queued_at_kill=at_kill.get("queued", 0), running_at_kill=at_kill.get("running", 0),
        create_during_outage_seconds=round(create_seconds, 3),
        publish_after_restart_seconds=round(published, 2),
        drain_after_restart_seconds=round(drained, 2), max_delivery=summary.max_delivery,
    )  # fmt: skip


@pytest.mark.timeout(90)
def test_outage_backlog_publishes_within_5s_of_restart(fault: Fault) -> None:
    """Tasks created while nats-server is dead (CreateTask answers from PostgreSQL alone)
    are published within 5 s of its restart, even though the dispatcher was publishing into
    the dead connection when it came back."""
    fault.start(workers=0)
    client = fault.client()
    client.create(5, name="warm-up")
    checks.wait_until(lambda: _unsent(fault, "warm-up") == 0, within=30, what="warm-up sent")
    fault.nats.kill()
    client.create(DURING, name="during-outage")
    time.sleep(0.5)  # the dispatcher is now publishing into a dead connection
    fault.nats.restart()
    published = checks.wait_until(
        lambda: _unsent(fault, "during-outage") == 0, within=30, what="outage jobs published"
    )
    harness.record("T4-publish", publish_after_restart_seconds=round(published, 2))
    assert published <= PUBLISH_BOUND, published
