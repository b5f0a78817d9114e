"""T7: the JOBS stream purged after the jobs were committed and published (a lost message)."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.common import bus

JOBS = 20
RECONCILE_AFTER = 3.0


@pytest.mark.long
@pytest.mark.timeout(90)
async def test_reconciler_redrives_purged_jobs(fault: Fault) -> None:
    """All 20 jobs are published (rows marked sent, subtasks queued), then the stream is
    purged with nats-py before any worker runs. The reconciler sees queued subtasks with no
    sign of life for TASKS_RECONCILE_AFTER_SECONDS and publishes them again under a new
    message-id generation; a worker started afterwards finishes every one exactly once."""
    await asyncio.to_thread(
        fault.start,
        workers=0,
        extra_env={"TASKS_RECONCILE_AFTER_SECONDS": str(RECONCILE_AFTER)},
    )
    client = await asyncio.to_thread(fault.client)
    await asyncio.to_thread(client.create, JOBS)
    await asyncio.to_thread(
        checks.wait_until,
        lambda: fault.states() == {"queued": JOBS},
        within=30,
        what="every job published",
    )
    nc = await nats.connect(fault.nats.url)
    try:
        js = nc.jetstream()
        assert (await js.stream_info(bus.JOBS_STREAM)).state.messages == JOBS
        await js.purge_stream(bus.JOBS_STREAM)
        assert (await js.stream_info(bus.JOBS_STREAM)).state.messages == 0
    finally:
        await nc.close()
    purged = time.monotonic()
    await asyncio.to_thread(fault.add_worker)
    await asyncio.to_thread(fault.wait_finished, 60)
    recovered = time.monotonic() - purged
    summary = await asyncio.to_thread(fault.check)
    assert summary.states == {"succeeded": JOBS}
    assert summary.images == JOBS
    generations = await asyncio.to_thread(
        checks.scalar, fault.database_url, "SELECT min(generation) FROM tasks.subtasks"
    )
    assert generations >= 1, "every job had to be re-published"
    harness.record(
        "T7", purged=JOBS, reconcile_after=RECONCILE_AFTER,
        recovery_seconds=round(recovered, 2), max_generation=summary.max_generation,
    )  # fmt: skip
