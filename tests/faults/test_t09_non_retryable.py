"""T9: a job whose render fails with an error that retrying cannot fix."""

from __future__ import annotations

import json
import time

import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus

JOBS = 3


@pytest.mark.long
@pytest.mark.timeout(90)
def test_non_retryable_error_fails_at_once_without_redelivery(fault: Fault) -> None:
    """A renderer limited to 512 px refuses the 1024x1024 renders (UNSUPPORTED_SIZE, not
    retryable): each job is delivered once and terminated, the subtasks fail with the
    reason, the task finishes FAILED, and nothing comes back after ack_wait."""
    env = {
        "IMAGEGEN_PROVIDER_STANDARD": "procedural",
        "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps({"max_side": 512}),
    }
    fault.start(workers=1, worker_env=env)
    client = fault.client()
    task = client.create(JOBS)
    took = fault.wait_finished(within=30)
    # Past ack_wait a redelivery would show up as a second delivery.
    time.sleep(harness.ACK_WAIT + 1.0)
    summary = fault.check()
    assert summary.states == {"failed": JOBS}
    assert summary.images == 0
    assert summary.max_delivery == 1
    failed = checks.rows(
        fault.database_url, "SELECT error_type, error_message, attempt FROM tasks.subtasks"
    )
    assert {r["error_type"] for r in failed} == {"UNSUPPORTED_SIZE"}
    assert all("1024x1024" in r["error_message"] for r in failed)
    assert {r["attempt"] for r in failed} == {1}
    info = checks.consumer_info(fault.nats.url, bus.worker_consumer("standard"))
    assert (info.num_redelivered, info.num_ack_pending, info.num_pending) == (0, 0, 0)
    assert checks.stream_messages(fault.nats.url) == 0
    assert client.get(task.id).failed_count == JOBS
    harness.record("T9", jobs=JOBS, deliveries=1, seconds_to_failed=round(took, 2))
