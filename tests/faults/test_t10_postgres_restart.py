"""T10: PostgreSQL killed (-9) and restarted during a 10,000-subtask CreateTask, and again
while workers report results."""

from __future__ import annotations

import concurrent.futures
import time

import grpc
import pytest
from faults import checks, harness
from faults.harness import Fault

TOTAL = 10_000
ROWS = (
    "SELECT (SELECT count(*) FROM tasks.tasks WHERE request_id = 'big') AS tasks,"
    " (SELECT count(*) FROM tasks.subtasks) AS subtasks,"
    " (SELECT count(*) FROM tasks.outbox) AS outbox"
)


@pytest.mark.long
@pytest.mark.timeout(600)
def test_postgres_crash_during_create_and_reporting(fault: Fault) -> None:
    """A kill -9 of PostgreSQL while a 10,000-subtask CreateTask runs leaves either no rows
    (the call fails UNAVAILABLE) or all 10,000; a retry with the same request_id then yields
    exactly one task of 10,000. A second kill while workers report: events wait in
    JetStream and are folded after the restart; every subtask succeeds once, none without
    its image, counters equal the rows."""
    fault.start(workers=2, worker_env={"WORKER_CONCURRENCY": "8"})
    client = fault.client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        creating = pool.submit(client.create, TOTAL, request_id="big", timeout=60)
        time.sleep(0.15)  # the bulk insert is under way
        fault.postgres.kill()
        fault.postgres.start()
        try:
            creating.result()
            outcome = "succeeded"
        except grpc.RpcError as error:
            outcome = error.code().name
    assert outcome in ("succeeded", "UNAVAILABLE"), outcome
    counts = checks.rows(fault.database_url, ROWS)[0]
    assert counts in (
        {"tasks": 0, "subtasks": 0, "outbox": 0},
        {"tasks": 1, "subtasks": TOTAL, "outbox": TOTAL},
    ), counts
    if outcome == "UNAVAILABLE":
        assert counts["tasks"] == 0
    # The client's retry: same request_id, one task either way.
    retried = checks.wait_until(
        lambda: _create_once(client, "big", []), within=30, what="CreateTask after the restart"
    )
    assert checks.rows(fault.database_url, ROWS)[0] == {
        "tasks": 1, "subtasks": TOTAL, "outbox": TOTAL,
    }  # fmt: skip
    checks.wait_until(
        lambda: fault.states().get("succeeded", 0) >= 2000, within=180, what="2,000 reported"
    )
    fault.postgres.kill()
    down = time.monotonic()
    time.sleep(2.0)  # workers keep rendering and publishing events meanwhile
    fault.postgres.start()
    restarted = time.monotonic()
    fault.wait_finished(within=400)
    drained = time.monotonic() - restarted
    summary = fault.check()
    assert summary.states == {"succeeded": TOTAL}
    assert summary.images == TOTAL
    harness.record(
        "T10", create_outcome=outcome, create_retry_seconds=round(retried, 2),
        outage_seconds=round(restarted - down, 2), finish_after_restart_seconds=round(drained, 1),
        max_delivery=summary.max_delivery,
    )  # fmt: skip


def _create_once(client: harness.Client, request_id: str, ids: list[str]) -> bool:
    try:
        task = client.create(TOTAL, request_id=request_id, timeout=60)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.UNAVAILABLE:
            raise
        return False
    assert task.total_images == TOTAL
    ids.append(task.id)
    return True


COMMITTED = "SELECT count(*) FROM tasks.tasks WHERE request_id = 'committed'"
UNSENT = "SELECT count(*) FROM tasks.outbox WHERE sent_time IS NULL"


@pytest.mark.long
@pytest.mark.timeout(300)
def test_postgres_crash_right_after_create_commits(fault: Fault) -> None:
    """The other branch of T10: PostgreSQL killed (-9) the moment the 10,000-subtask create
    has committed, before or while the answer goes out. The call succeeds or fails
    UNAVAILABLE, but the rows are all there either way; the client's retry with the same
    request_id gets that one task back, and after the restart the dispatcher puts all
    10,000 jobs on the stream, each once."""
    fault.start(workers=0, extra_env={"TASKS_DISPATCH_WINDOW": str(2 * TOTAL)})
    client = fault.client()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        creating = pool.submit(client.create, TOTAL, request_id="committed", timeout=60)
        checks.wait_until(
            lambda: int(checks.scalar(fault.database_url, COMMITTED)) == 1,
            within=60,
            every=0.005,
            what="the create's commit",
        )
        fault.postgres.kill()
        fault.postgres.start()
        try:
            first = creating.result()
            outcome, first_id = "succeeded", first.id
        except grpc.RpcError as error:
            outcome, first_id = error.code().name, None
    assert outcome in ("succeeded", "UNAVAILABLE"), outcome
    counts = checks.rows(fault.database_url, ROWS.replace("'big'", "'committed'"))[0]
    assert counts == {"tasks": 1, "subtasks": TOTAL, "outbox": TOTAL}, counts
    retried: list[str] = []
    checks.wait_until(
        lambda: _create_once(client, "committed", retried),
        within=30,
        what="CreateTask after the restart",
    )
    if first_id is not None:
        assert retried == [first_id]  # the same task, not a second one
    published = checks.wait_until(
        lambda: int(checks.scalar(fault.database_url, UNSENT)) == 0,
        within=120,
        what="every job dispatched",
    )
    assert checks.stream_messages(fault.nats.url) == TOTAL
    harness.record(
        "T10b", create_outcome=outcome, all_jobs_published_after_restart_seconds=round(published, 1)
    )
