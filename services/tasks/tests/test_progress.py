"""Dispatch and progress: jobs on the stream, events folded exactly once, advisories."""

from __future__ import annotations

import asyncio

import nats
import pytest

from kiln.common import bus
from kiln.common.testing import NatsServer, consumers
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2
from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h

K = h.K


async def test_jobs_published_and_task_succeeds(server: h.Running, worker: h.FakeWorker) -> None:
    """Every subtask becomes one Job (msg id `<subtask>.<attempt>`, attempt 1, the subtask's
    fields); succeeding them all ends the task SUCCEEDED with exact counts."""
    alice = server.client("alice")
    request = h.create_request(values=("red", "blue", "green"))
    request.settings.output_format = tasks_pb2.OUTPUT_FORMAT_WEBP
    task = (await alice.tasks.CreateTask(request)).task
    jobs = await worker.fetch_exactly(3)
    assert {j.task_id for _, j in jobs} == {task.id}
    for message, job in jobs:
        assert message.headers is not None
        assert message.headers[bus.MSG_ID_HEADER] == f"{job.subtask_id}.1"
        assert job.attempt == 1 and job.owner_id == "alice" and job.queue == "standard"
        assert job.format == imagegen_pb2.IMAGE_FORMAT_WEBP
        assert job.width == 1024 and job.create_time.seconds > 0

    async def all_queued() -> bool | None:
        # Rows are marked queued just after JetStream acknowledged their jobs.
        listed = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
        return {s.state for s in listed.subtasks} == {tasks_pb2.SUBTASK_STATE_QUEUED} or None

    await h.wait_for(all_queued, what="subtasks queued")
    for message, job in jobs:
        await worker.succeed(message, job)

    async def done() -> tasks_pb2.Task | None:
        got = await h.get_task(alice, task.id)
        return got if got.state == tasks_pb2.TASK_STATE_SUCCEEDED else None

    final = await h.wait_for(done, what="task succeeded")
    assert (final.succeeded_count, final.failed_count, final.running_count) == (3, 0, 0)
    assert final.progress == 1.0 and final.all_subtasks_completed
    assert final.HasField("finish_time") and final.HasField("start_time")
    subtasks = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
    for subtask in subtasks.subtasks:
        assert subtask.state == tasks_pb2.SUBTASK_STATE_SUCCEEDED
        assert subtask.result.object_name.endswith(".png")
        assert subtask.worker_id == "w1" and subtask.render_duration.ToMilliseconds() == 10


async def test_duplicate_stale_and_zombie_events_change_nothing(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """Duplicated terminal events, events of another attempt, progress older than what was
    folded, and a late STARTED after SUCCEEDED leave the counts exact."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    (m1, j1), (m2, j2) = await worker.fetch_exactly(2)
    await worker.event(j1, K.SUBTASK_EVENT_KIND_STARTED, delivery=1, sequence=1)
    await worker.event(
        j1, K.SUBTASK_EVENT_KIND_PROGRESS, delivery=1, sequence=5, step=5, total_steps=10
    )
    await worker.event(
        j1, K.SUBTASK_EVENT_KIND_PROGRESS, delivery=1, sequence=3, step=3, total_steps=10
    )
    zombie = jobs_pb2.Job()
    zombie.CopyFrom(j2)
    zombie.attempt = 7
    await worker.succeed(None, zombie)  # another attempt: fenced off
    retrying = jobs_pb2.JobError(type="PROVIDER_TIMEOUT", message="slow", retryable=True)
    await worker.event(j2, K.SUBTASK_EVENT_KIND_FAILED, error=retrying, will_retry=True)

    async def settled() -> bool:
        page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
        by_id = {s.id: s for s in page.subtasks}
        return bool(
            by_id[j1.subtask_id].state == tasks_pb2.SUBTASK_STATE_RUNNING
            and by_id[j2.subtask_id].error.type == "PROVIDER_TIMEOUT"
        )

    await h.wait_for(settled, what="running and retrying")
    got = await h.get_task(alice, task.id)
    assert got.succeeded_count == 0 and got.failed_count == 0
    assert got.state == tasks_pb2.TASK_STATE_RUNNING
    # Now finish both, with every terminal event twice (distinct event ids) and a late
    # STARTED after the end.
    for _ in range(2):
        await worker.succeed(None, j1)
        await worker.fail(None, j2)
    await worker.event(j1, K.SUBTASK_EVENT_KIND_STARTED, delivery=2, sequence=99)
    await worker.event(j2, K.SUBTASK_EVENT_KIND_CANCELLED)

    async def finished() -> tasks_pb2.Task | None:
        current = await h.get_task(alice, task.id)
        return current if current.all_subtasks_completed else None

    await h.wait_for(finished, what="finished")
    # The late events are on the stream (published with an ack): once the progress
    # consumer has nothing pending or unacknowledged, the fold has handled them too.
    await h.wait_for(
        lambda: consumers.caught_up(worker.js, bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER),
        what="late events folded",
    )
    final = await h.get_task(alice, task.id)
    assert final.state == tasks_pb2.TASK_STATE_PARTIALLY_FAILED
    assert (final.succeeded_count, final.failed_count, final.cancelled_count) == (1, 1, 0)
    assert final.running_count == 0
    page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
    states = {s.id: (s.state, s.error.type) for s in page.subtasks}
    assert states[j1.subtask_id] == (tasks_pb2.SUBTASK_STATE_SUCCEEDED, "")
    assert states[j2.subtask_id] == (tasks_pb2.SUBTASK_STATE_FAILED, "BAD")
    await m1.ack()
    await m2.ack()


async def test_max_deliveries_advisory_fails_the_subtask(
    server: h.Running, private_nats: NatsServer
) -> None:
    """A job that reaches max_deliver without an ack ends as a failed subtask
    (MAX_DELIVERIES), its message is removed from the JOBS stream, and the task finishes."""
    settings = bus.BusSettings(job_ack_wait=1.0, job_max_deliver=2)
    worker = await h.FakeWorker.connect(private_nats.url, settings=settings)
    try:
        alice = server.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("only",)))).task
        for _ in range(2):
            [(message, _job)] = await worker.fetch_exactly(1, wait=5)
            assert message.metadata.num_delivered in (1, 2)
            # never acknowledged: the worker "crashes"
        # A worker keeps pulling; the server notices the exhausted job on a later pull.
        assert await worker.fetch(1, wait=2.5) == []

        async def failed() -> tasks_pb2.Task | None:
            got = await h.get_task(alice, task.id)
            return got if got.state == tasks_pb2.TASK_STATE_FAILED else None

        final = await h.wait_for(failed, within=15, what="task failed")
        assert final.failed_count == 1
        page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
        assert page.subtasks[0].error.type == "MAX_DELIVERIES"
        assert "delivered" in page.subtasks[0].error.message

        async def removed() -> bool:
            info = await worker.js.stream_info(bus.JOBS_STREAM)
            return info.state.messages == 0

        await h.wait_for(removed, what="job removed from stream")
    finally:
        await worker.close()


async def test_nats_outage_create_succeeds_and_backlog_drains(
    server: h.Running, private_nats: NatsServer
) -> None:
    """With NATS down, CreateTask still succeeds (outbox); within 5 s of NATS coming back
    every job is on the stream, once."""
    alice = server.client("alice")
    private_nats.stop()
    started = asyncio.get_running_loop().time()
    task = (await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(50)]))).task
    assert asyncio.get_running_loop().time() - started < 2.0
    assert task.total_images == 50
    await asyncio.sleep(1.0)
    private_nats.start()
    returned = asyncio.get_running_loop().time()
    nc = await nats.connect(private_nats.url)
    try:
        js = nc.jetstream()

        async def drained() -> bool:
            try:
                info = await js.stream_info(bus.JOBS_STREAM)
            except nats.errors.Error:  # JetStream still starting up after the restart
                return False
            return info.state.messages == 50

        await h.wait_for(drained, within=10, what="backlog published")
        # RELIABILITY G4/T4: the backlog is published within 5 s of NATS's return.
        assert asyncio.get_running_loop().time() - returned < 5.0
    finally:
        await nc.close()


@pytest.mark.parametrize("kind", ["cancel_event"])
async def test_worker_cancelled_event(server: h.Running, worker: h.FakeWorker, kind: str) -> None:
    """A CANCELLED event from a worker ends that subtask cancelled."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
    [(message, job)] = await worker.fetch_exactly(1)
    await worker.event(job, K.SUBTASK_EVENT_KIND_CANCELLED)
    await message.ack()

    async def done() -> tasks_pb2.Task | None:
        got = await h.get_task(alice, task.id)
        return got if got.all_subtasks_completed else None

    final = await h.wait_for(done, what=kind)
    assert final.cancelled_count == 1 and final.state == tasks_pb2.TASK_STATE_CANCELLED
