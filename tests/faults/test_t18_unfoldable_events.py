"""T18 (events): events that can never fold, published among a real task's events."""

from __future__ import annotations

import re
import urllib.request
import uuid

import nats
import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus
from kiln.imagegen.v1 import jobs_pb2

JOBS = 20
POISON = 5


async def _publish_poison(nats_url: str, count: int) -> None:
    """Events that look like a worker's but name no UUID: the fold can never apply them."""
    nc = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        for i in range(count):
            event = jobs_pb2.SubtaskEvent(
                event_id=uuid.uuid4().hex,
                subtask_id=f"poison-{i}",
                task_id=str(uuid.uuid4()),
                attempt=1,
                kind=jobs_pb2.SubtaskEventKind.SUBTASK_EVENT_KIND_STARTED,
                worker_id="rogue",
                delivery=1,
                sequence=1,
            )
            await js.publish(bus.events_subject(event.task_id), event.SerializeToString())
    finally:
        await nc.close()


def _rejected_invalid(metrics_port: int) -> float:
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(r'^kiln_tasks_events_rejected_total\{reason="invalid"\} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.mark.long
@pytest.mark.timeout(120)
def test_unfoldable_events_are_terminated_and_the_rest_folds(fault: Fault) -> None:
    """Events whose subtask_id is not a UUID, published before and while a 20-image task
    runs, are each terminated once by the tasks process (an `event_rejected` log line and a
    count in kiln_tasks_events_rejected_total), never redelivered; the task's own events
    fold and it ends with exact counts, and the progress consumer ends with nothing pending."""
    fault.start(workers=1)
    client = fault.client()
    checks.run(_publish_poison(fault.nats.url, POISON))
    client.create(JOBS)
    checks.run(_publish_poison(fault.nats.url, POISON))
    took = fault.wait_finished(within=60)
    summary = fault.check()
    assert summary.states == {"succeeded": JOBS}
    progress = checks.consumer_info(fault.nats.url, bus.PROGRESS_CONSUMER, bus.EVENTS_STREAM)
    assert progress.num_redelivered == 0
    tasks = fault.kiln.tasks
    assert _rejected_invalid(tasks.metrics_port) == 2 * POISON
    assert tasks.log_path.read_text(errors="replace").count("event_rejected") == 2 * POISON
    harness.record("T18-events", jobs=JOBS, poison=2 * POISON, seconds_to_finished=round(took, 2))
