"""T12: high_priority jobs arriving behind a 500-job standard backlog on saturated workers."""

from __future__ import annotations

import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.tasks.v1 import tasks_pb2

BACKLOG = 500
URGENT = 10
OVERTAKEN = (
    "SELECT s.worker_id, count(*) AS n FROM tasks.subtasks s WHERE s.queue = 'standard'"
    " AND s.start_time > (SELECT create_time FROM tasks.tasks WHERE id = %s::uuid)"
    " AND s.start_time < (SELECT max(start_time) FROM tasks.subtasks WHERE task_id = %s::uuid)"
    " GROUP BY s.worker_id"
)


@pytest.mark.long
@pytest.mark.timeout(240)
def test_high_priority_overtakes_standard_backlog(fault: Fault) -> None:
    """Two workers (2 slots each, high_priority then standard) are busy with a 500-job
    standard task when a 10-job high_priority task arrives: all 10 start before at most 2
    more standard jobs start per worker. The standard task is then cancelled; everything
    still ends in exactly one terminal state with counters equal to the rows."""
    env = {
        **harness.slow(0.1),
        **harness.slow(0.1, "HIGH_PRIORITY"),
        "WORKER_QUEUES": "high_priority,standard",
        "WORKER_CONCURRENCY": "2",
    }
    fault.start(workers=2, worker_env=env)
    client = fault.client()
    backlog = client.create(BACKLOG, name="backlog")
    checks.wait_until(
        lambda: fault.states(backlog.id).get("running", 0) >= 4, within=60, what="saturated"
    )
    urgent = client.create(URGENT, name="urgent", queue=tasks_pb2.QUEUE_HIGH_PRIORITY)
    waited = checks.wait_until(
        lambda: fault.states(urgent.id).get("succeeded", 0) == URGENT,
        within=90,
        what="urgent task done",
    )
    overtaken = {
        r["worker_id"]: int(r["n"])
        for r in checks.rows(fault.database_url, OVERTAKEN, urgent.id, urgent.id)
    }
    assert all(n <= 2 for n in overtaken.values()), overtaken
    client.cancel(backlog.id)
    fault.wait_finished(within=60)
    summary = fault.check()
    assert summary.states["succeeded"] >= URGENT
    assert summary.states["cancelled"] > 0
    harness.record(
        "T12", urgent_done_seconds=round(waited, 2),
        standard_started_meanwhile_per_worker=sorted(overtaken.values()),
        backlog_states=dict(fault.states(backlog.id)),
    )  # fmt: skip
