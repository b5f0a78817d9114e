"""T11: the same CreateTask sent twice in a row, and eight copies sent at once."""

from __future__ import annotations

import concurrent.futures

import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus

JOBS = 25
RACERS = 8
PER_TASK = (
    "SELECT t.request_id, count(DISTINCT t.id) AS tasks, count(DISTINCT s.id) AS subtasks,"
    " count(DISTINCT o.id) AS outbox FROM tasks.tasks t"
    " LEFT JOIN tasks.subtasks s ON s.task_id = t.id"
    " LEFT JOIN tasks.outbox o ON o.task_id = t.id GROUP BY t.request_id ORDER BY 1"
)


@pytest.mark.timeout(90)
def test_repeated_and_racing_creates_make_one_task(fault: Fault) -> None:
    """A repeat with the same request_id returns the first task; eight concurrent copies of
    another request all get one task id. The database holds exactly two tasks with 25
    subtasks and 25 outbox rows each, and JetStream exactly 50 jobs."""
    fault.start(workers=0)
    client = fault.client()
    first = client.create(JOBS, request_id="again")
    second = client.create(JOBS, request_id="again")
    assert second.id == first.id
    with concurrent.futures.ThreadPoolExecutor(RACERS) as pool:
        raced = list(pool.map(lambda _: client.create(JOBS, request_id="race").id, range(RACERS)))
    assert len(set(raced)) == 1
    assert checks.rows(fault.database_url, PER_TASK) == [
        {"request_id": "again", "tasks": 1, "subtasks": JOBS, "outbox": JOBS},
        {"request_id": "race", "tasks": 1, "subtasks": JOBS, "outbox": JOBS},
    ]
    checks.wait_until(
        lambda: fault.states() == {"queued": 2 * JOBS}, within=30, what="both published"
    )
    checks.wait_until(
        lambda: checks.stream_messages(fault.nats.url, bus.JOBS_STREAM) == 2 * JOBS,
        within=5,
        what="50 jobs in JOBS",
    )
    harness.record("T11", racers=RACERS, tasks=2, jobs=2 * JOBS)
