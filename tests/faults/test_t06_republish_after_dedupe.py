"""T6: every job of a finished task published again after the dedupe window has passed."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from faults import checks, harness
from faults.harness import Fault
from nats.aio.msg import Msg

JOBS = 10
DEDUPE = 1.0
SNAPSHOT = (
    "SELECT s.*, t.version AS task_version, t.succeeded_count, t.failed_count, t.update_time"
    " AS task_update_time FROM tasks.subtasks s JOIN tasks.tasks t ON t.id = s.task_id"
    " ORDER BY s.idx"
)


@pytest.mark.long
@pytest.mark.timeout(90)
async def test_republished_jobs_change_nothing(fault: Fault) -> None:
    """The same 10 job messages (same bytes, same Nats-Msg-Id) are published again once
    JetStream no longer drops them as duplicates. Workers render them again, but every
    transition is fenced (the subtasks are terminal): the subtask rows, the task's version
    and counters, and the stored images are exactly what they were."""
    await asyncio.to_thread(
        fault.start, workers=1, extra_env={"JOB_DEDUPE_WINDOW_SECONDS": str(DEDUPE)}
    )
    nc = await nats.connect(fault.nats.url)
    captured: list[Msg] = []

    async def keep(msg: Msg) -> None:
        captured.append(msg)

    # A core subscription sees every job the dispatcher publishes, next to the stream.
    watcher = await nc.subscribe("jobs.>", cb=keep)
    await nc.flush()
    try:
        client = await asyncio.to_thread(fault.client)
        await asyncio.to_thread(client.create, JOBS)
        await asyncio.to_thread(fault.wait_finished, 60)
        assert len(captured) == JOBS
        await asyncio.to_thread(
            checks.wait_until, lambda: checks.settled(fault.nats.url), within=30, what="idle"
        )
        before = await asyncio.to_thread(checks.rows, fault.database_url, SNAPSHOT)
        images_before = {
            i.name: i.digest for i in await asyncio.to_thread(checks.list_images, fault.nats.url)
        }
        await asyncio.sleep(DEDUPE + 1.5)
        js = nc.jetstream()
        await watcher.unsubscribe()  # not to capture our own re-publications
        acks = [
            await js.publish(msg.subject, msg.data, headers=dict(msg.headers or {}))
            for msg in captured
        ]
        assert not any(a.duplicate for a in acks), "still inside the dedupe window"
        republished = time.monotonic()
        await asyncio.to_thread(
            checks.wait_until, lambda: checks.settled(fault.nats.url), within=60, what="idle"
        )
        settled = time.monotonic() - republished
        await asyncio.sleep(1.0)
        after = await asyncio.to_thread(checks.rows, fault.database_url, SNAPSHOT)
        images_after = {
            i.name: i.digest for i in await asyncio.to_thread(checks.list_images, fault.nats.url)
        }
        assert after == before
        assert images_after == images_before
        summary = await asyncio.to_thread(fault.check)
        assert summary.states == {"succeeded": JOBS}
        harness.record("T6", republished=JOBS, settled_seconds=round(settled, 2), db_changes=0)
    finally:
        await nc.close()
