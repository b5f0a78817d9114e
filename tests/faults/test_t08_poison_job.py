"""T8: a job that crashes its worker process on every delivery (a poison job)."""

from __future__ import annotations

import time

import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus
from kiln.tasks.v1 import tasks_pb2

MARKER = "__poison__"
MAX_DELIVER = 3
VALUES = ["calm lake", f"{MARKER} storm", "quiet hill", "red barn", "old tree"]
CRASH_EXIT_CODE = 70  # imagegen.faults.CRASH_EXIT_CODE


@pytest.mark.long
@pytest.mark.timeout(120)
def test_poison_job_fails_after_max_deliveries_and_task_finishes(fault: Fault) -> None:
    """A prompt carrying IMAGEGEN_FAULT_CRASH_MARKER kills the worker (exit 70) each time it
    is delivered; a supervisor loop restarts the worker like Kubernetes would. Exactly
    JOB_MAX_DELIVER (3) crashes happen, then the max-deliveries advisory fails the subtask
    with MAX_DELIVERIES and its reason, the message is removed from JOBS, the advisory is
    kept in JOB_ADVISORIES, and the task finishes with the other 4 images."""
    env = {"IMAGEGEN_FAULT_CRASH_MARKER": MARKER, "WORKER_CONCURRENCY": "1"}
    kiln = fault.start(workers=1, worker_env=env, extra_env={"JOB_MAX_DELIVER": str(MAX_DELIVER)})
    worker = kiln.workers[0]
    client = fault.client()
    task = client.create(len(VALUES), values=VALUES)
    started = time.monotonic()
    crashes = 0
    while not checks.all_finished(fault.database_url):
        assert worker.process is not None
        code = worker.process.poll()
        if code is not None:
            assert code == CRASH_EXIT_CODE, worker.log_tail()
            crashes += 1
            worker.start(wait=False)
        assert time.monotonic() - started < 90, f"task not finished after {crashes} crashes"
        time.sleep(0.05)
    finished = time.monotonic() - started
    summary = fault.check()
    assert summary.states == {"succeeded": 4, "failed": 1}
    assert crashes == MAX_DELIVER
    failed = checks.rows(
        fault.database_url,
        "SELECT prompt, error_type, error_message FROM tasks.subtasks WHERE state = 'failed'",
    )
    assert failed[0]["error_type"] == "MAX_DELIVERIES"
    assert MARKER in failed[0]["prompt"]
    assert failed[0]["error_message"]
    assert client.get(task.id).state == tasks_pb2.TASK_STATE_PARTIALLY_FAILED
    assert checks.stream_messages(fault.nats.url, bus.JOBS_STREAM) == 0
    assert checks.stream_messages(fault.nats.url, bus.ADVISORIES_STREAM) >= 1
    harness.record(
        "T8", max_deliver=MAX_DELIVER, worker_crashes=crashes,
        seconds_to_failed=round(finished, 2), error_type=failed[0]["error_type"],
    )  # fmt: skip
