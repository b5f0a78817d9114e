"""T5: the dispatcher dies right after publishing a batch and before marking it sent.

The crash must land at one exact point, so it needs a test-only fault hook in the tasks
service: `TASKS_FAULT_CRASH_AFTER_PUBLISH=1` makes the dispatcher `os._exit` after its first
batch is published and acknowledged by JetStream, before the transaction that marks the rows
sent commits. No deployment sets it (services/tasks/src/tasks/dispatch.py).
(tests/test_tasks_dispatch_crash.py covers the same window by racing a kill -9 against the
stream's message count, which hits it often but not at one guaranteed point.)
"""

from __future__ import annotations

import grpc
import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus

JOBS = 40
SENT = "SELECT count(*) FROM tasks.outbox WHERE sent_time IS NOT NULL"


@pytest.mark.long
@pytest.mark.timeout(90)
def test_crash_between_publish_and_mark_publishes_each_job_once(fault: Fault) -> None:
    """With the hook on, the tasks process exits after publishing all 40 jobs and before
    marking any row sent. Restarted without the hook, it publishes the same rows again with
    the same Nats-Msg-Id: the stream holds 40 jobs, not 80, and every row ends marked sent."""
    kiln = fault.start(workers=0, extra_env={"TASKS_DISPATCH_BATCH": "500"})
    tasks = kiln.tasks
    tasks.env["TASKS_FAULT_CRASH_AFTER_PUBLISH"] = "1"
    tasks.restart()
    client = fault.client()
    try:
        client.create(JOBS, request_id="t5")
        answered = "OK"
    except grpc.RpcError as error:
        # The injected exit can beat CreateTask's answer out of the process (the batch is
        # published within milliseconds of the commit): the task is committed either way.
        answered = error.code().name
    assert answered in ("OK", "UNAVAILABLE"), answered
    checks.wait_until(
        lambda: tasks.process is not None and tasks.process.poll() is not None,
        within=10,
        what="the dispatcher's injected crash",
    )
    assert checks.stream_messages(fault.nats.url, bus.JOBS_STREAM) == JOBS
    assert checks.scalar(fault.database_url, SENT) == 0
    del tasks.env["TASKS_FAULT_CRASH_AFTER_PUBLISH"]
    tasks.start()
    republished = checks.wait_until(
        lambda: checks.scalar(fault.database_url, SENT) == JOBS, within=15, what="rows sent"
    )
    assert checks.stream_messages(fault.nats.url, bus.JOBS_STREAM) == JOBS
    assert fault.states() == {"queued": JOBS}
    assert checks.scalar(fault.database_url, "SELECT count(*) FROM tasks.tasks") == 1
    harness.record("T5", jobs=JOBS, stream_messages=JOBS, marked_after_restart=republished)
