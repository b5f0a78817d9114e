"""T2: a worker frozen (SIGSTOP) past ack_wait while its job finishes elsewhere, then thawed."""

from __future__ import annotations

import signal
import time

import pytest
from faults import checks, harness
from faults.harness import Fault

SNAPSHOT = (
    "SELECT s.state, s.attempt, s.worker_id, s.object_name, s.sha256, s.size_bytes,"
    " s.finish_time, s.changed_version, s.last_delivery, t.version, t.succeeded_count,"
    " t.failed_count FROM tasks.subtasks s JOIN tasks.tasks t ON t.id = s.task_id"
)


@pytest.mark.timeout(90)
def test_thawed_zombie_worker_changes_nothing(fault: Fault) -> None:
    """A worker SIGSTOPped mid-render loses its lease; another worker (a different renderer,
    so other bytes) finishes the job. After SIGCONT the zombie stores nothing and reports
    nothing: the row, the task version and the stored image (its sha256) stay the winner's."""
    slow_env = {**harness.slow(0.4), "WORKER_CONCURRENCY": "1"}
    kiln = fault.start(workers=1, worker_env=slow_env)
    zombie = kiln.workers[0]
    client = fault.client()
    task = client.create(1)
    checks.wait_until(
        lambda: fault.states(task.id).get("running") == 1, within=30, what="job running"
    )
    first_worker = checks.scalar(fault.database_url, "SELECT worker_id FROM tasks.subtasks")
    zombie.signal(signal.SIGSTOP)
    frozen = time.monotonic()
    # The instant renderer paints other bytes than the procedural one: if the zombie ever
    # overwrote the image, the stored digest would stop matching the recorded sha256.
    fault.add_worker({"WORKER_CONCURRENCY": "1"})
    fault.wait_finished(within=30)
    takeover = time.monotonic() - frozen
    before = checks.rows(fault.database_url, SNAPSHOT)
    assert before[0]["state"] == "succeeded"
    assert before[0]["worker_id"] != first_worker
    zombie.signal(signal.SIGCONT)
    checks.wait_until(
        lambda: "job_lease_lost" in zombie.log_tail(200), within=15, what="zombie drops job"
    )
    time.sleep(1.5)  # let anything the zombie might still send reach the database
    after = checks.rows(fault.database_url, SNAPSHOT)
    assert after == before
    summary = fault.check()
    assert summary.states == {"succeeded": 1}
    assert summary.images == 1
    assert zombie.process is not None and zombie.process.poll() is None, "zombie should live on"
    harness.record(
        "T2", freeze_to_success_elsewhere_seconds=round(takeover, 2),
        winning_delivery=after[0]["last_delivery"],
    )  # fmt: skip
