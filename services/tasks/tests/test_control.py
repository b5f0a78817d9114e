"""CancelTask, RetryTask, DeleteTask, GetImage and ownership through gRPC."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import nats.errors
import nats.js.errors
import pytest

from kiln.common import bus
from kiln.common.testing.status import error_reason
from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


async def _finished(client: h.Client_, task_id: str) -> tasks_pb2.Task:
    async def check() -> tasks_pb2.Task | None:
        got = await h.get_task(client, task_id)
        return got if got.all_subtasks_completed else None

    result: tasks_pb2.Task = await h.wait_for(check, what="task finished")
    return result


async def test_cancel_mid_run_keeps_finished_work(server: h.Running, worker: h.FakeWorker) -> None:
    """Cancelling mid-run drops waiting subtasks at once, records the cancellation for
    workers, keeps what succeeded, and ignores a late success of a cancelled subtask; the
    running one ends when its worker reports CANCELLED."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(6)]))).task
    jobs = await worker.fetch_exactly(6)
    await worker.succeed(jobs[0][0], jobs[0][1])
    await worker.event(jobs[1][1], h.K.SUBTASK_EVENT_KIND_STARTED)

    async def one_running() -> bool:
        got = await h.get_task(alice, task.id)
        return got.succeeded_count == 1 and got.running_count == 1

    await h.wait_for(one_running, what="one done, one running")
    cancelled = (await alice.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=task.id))).task
    assert cancelled.state == tasks_pb2.TASK_STATE_CANCELLED
    assert cancelled.cancelled_count == 4 and not cancelled.all_subtasks_completed
    kv = await worker.js.key_value(bus.CANCELLATIONS_BUCKET)
    assert (await kv.get(task.id)).value == b"cancelled"
    await worker.succeed(None, jobs[2][1])  # a queued job that ran anyway: ignored
    await worker.event(jobs[1][1], h.K.SUBTASK_EVENT_KIND_CANCELLED)
    final = await _finished(alice, task.id)
    assert final.state == tasks_pb2.TASK_STATE_CANCELLED
    assert (final.succeeded_count, final.cancelled_count, final.failed_count) == (1, 5, 0)
    again = await alice.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=task.id))
    assert again.task.state == tasks_pb2.TASK_STATE_CANCELLED
    for message, _ in jobs[1:]:
        await message.ack()


async def test_retry_requeues_failed_and_cancelled_as_new_attempts(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """RetryTask refuses a running task and a task with nothing to retry (FAILED_PRECONDITION,
    told apart by their reasons TASK_STILL_RUNNING and NOTHING_TO_RETRY); on a finished task
    it creates new subtask rows (retried_from, next attempt) for the failed ones, publishes
    them, and the task can then succeed with exact counts."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c")))).task
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.RetryTask(tasks_pb2.RetryTaskRequest(task_id=task.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "TASK_STILL_RUNNING"
    jobs = await worker.fetch_exactly(3)
    await worker.succeed(*jobs[0])
    await worker.fail(*jobs[1])
    await worker.fail(*jobs[2])
    done = await _finished(alice, task.id)
    assert done.state == tasks_pb2.TASK_STATE_PARTIALLY_FAILED
    retried = await alice.tasks.RetryTask(tasks_pb2.RetryTaskRequest(task_id=task.id))
    assert retried.retried_count == 2
    assert retried.task.failed_count == 0 and retried.task.total_images == 3
    assert retried.task.state == tasks_pb2.TASK_STATE_RUNNING
    new_jobs = await worker.fetch_exactly(2)
    old_ids = {jobs[1][1].subtask_id, jobs[2][1].subtask_id}
    for message, job in new_jobs:
        assert job.attempt == 2 and job.subtask_id not in old_ids
        assert message.headers is not None
        assert message.headers[bus.MSG_ID_HEADER] == f"{job.subtask_id}.2"
    page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
    assert len(page.subtasks) == 3
    assert {s.retried_from for s in page.subtasks if s.retried_from} == old_ids
    # A late event for a superseded row changes nothing.
    await worker.succeed(None, jobs[1][1])
    for message, job in new_jobs:
        await worker.succeed(message, job)
    final = await _finished(alice, task.id)
    assert final.state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert (final.succeeded_count, final.failed_count) == (3, 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.RetryTask(tasks_pb2.RetryTaskRequest(task_id=task.id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "NOTHING_TO_RETRY"


async def test_retry_after_cancel_lifts_the_cancellation(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """Retrying a cancelled task removes its cancellation record so workers run the new jobs."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    await alice.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=task.id))
    for message, _ in await worker.fetch(2, wait=1):
        await message.ack()
    retried = await alice.tasks.RetryTask(tasks_pb2.RetryTaskRequest(task_id=task.id))
    assert retried.retried_count == 2
    kv = await worker.js.key_value(bus.CANCELLATIONS_BUCKET)
    # KeyDeletedError (a delete marker) is a KeyNotFoundError: deleted or missing, both gone.
    with pytest.raises(nats.js.errors.KeyNotFoundError):
        await kv.get(task.id)
    for message, job in await worker.fetch_exactly(2):
        await worker.succeed(message, job)
    final = await _finished(alice, task.id)
    assert final.state == tasks_pb2.TASK_STATE_SUCCEEDED


async def test_delete_cancels_and_hides(server: h.Running, worker: h.FakeWorker) -> None:
    """DeleteTask cancels a running task, hides it from ListTasks, and GetTask shows it
    as deleted."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    await alice.tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id=task.id))
    listed = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert list(listed.tasks) == []
    got = await h.get_task(alice, task.id)
    assert got.is_deleted and got.state == tasks_pb2.TASK_STATE_CANCELLED
    await alice.tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id=task.id))


async def test_get_image_streams_metadata_then_chunks(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """GetImage sends metadata first, then the bytes in chunks of at most 1 MiB, for the
    image and its thumbnail; an unfinished subtask has no image (FAILED_PRECONDITION)."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    (m1, j1), (m2, j2) = await worker.fetch_exactly(2)
    image = bytes(range(256)) * 10_000  # 2.5 MiB
    await worker.succeed(m1, j1, image=image)
    await _wait_state(alice, task.id, j1.subtask_id, tasks_pb2.SUBTASK_STATE_SUCCEEDED)
    parts = [
        p async for p in alice.tasks.GetImage(tasks_pb2.GetImageRequest(subtask_id=j1.subtask_id))
    ]
    assert parts[0].HasField("metadata")
    meta = parts[0].metadata
    assert meta.size_bytes == len(image) and meta.task_id == task.id
    assert meta.sha256 == hashlib.sha256(image).hexdigest() and meta.content_type == "image/png"
    chunks = [p.chunk for p in parts[1:]]
    assert all(len(c) <= 1024 * 1024 for c in chunks) and len(chunks) == 3
    assert b"".join(chunks) == image
    thumb = [
        p
        async for p in alice.tasks.GetImage(
            tasks_pb2.GetImageRequest(subtask_id=j1.subtask_id, thumbnail=True)
        )
    ]
    assert thumb[1].chunk == b"thumb"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in alice.tasks.GetImage(tasks_pb2.GetImageRequest(subtask_id=j2.subtask_id)):
            pass
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await m2.ack()


async def _wait_state(client: h.Client_, task_id: str, subtask_id: str, state: int) -> None:
    async def check() -> bool:
        page = await client.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task_id))
        return any(s.id == subtask_id and s.state == state for s in page.subtasks)

    await h.wait_for(check, what="subtask state")


async def test_other_owner_gets_not_found_everywhere(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """User B gets NOT_FOUND, with the same message as for a missing id, for every RPC
    naming A's task, subtask or image; an admin can read A's task."""
    alice, bob = server.client("alice"), server.client("bob")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
    [(message, job)] = await worker.fetch_exactly(1)
    await worker.succeed(message, job)
    await _finished(alice, task.id)
    missing = "00000000-0000-4000-8000-000000000000"

    async def attempts(task_id: str, subtask_id: str) -> list[tuple[grpc.StatusCode, str]]:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: bob.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id)),
            lambda: bob.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task_id)),
            lambda: bob.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=task_id)),
            lambda: bob.tasks.RetryTask(tasks_pb2.RetryTaskRequest(task_id=task_id)),
            lambda: bob.tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id=task_id)),
        ]
        found = []
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call()
            found.append(
                (caught.value.code(), (caught.value.details() or "").replace(task_id, "ID"))
            )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in bob.tasks.GetImage(tasks_pb2.GetImageRequest(subtask_id=subtask_id)):
                pass
        found.append(
            (caught.value.code(), (caught.value.details() or "").replace(subtask_id, "ID"))
        )
        return found

    theirs = await attempts(task.id, job.subtask_id)
    nothing = await attempts(missing, missing)
    assert theirs == nothing
    assert {code for code, _ in theirs} == {grpc.StatusCode.NOT_FOUND}
    listed = await bob.tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert list(listed.tasks) == []
    admin = server.client("root", role="admin")
    assert (await h.get_task(admin, task.id)).owner_id == "alice"


async def test_unauthenticated_calls_are_refused(server: h.Running) -> None:
    """Without a token every TaskService RPC is UNAUTHENTICATED."""
    from kiln.tasks.v1 import tasks_pb2_grpc  # noqa: PLC0415

    stub = tasks_pb2_grpc.TaskServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTask(tasks_pb2.GetTaskRequest(task_id="x"))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_cancel_during_nats_outage_records_cancellation_later(
    server: h.Running, worker: h.FakeWorker, private_nats: h.NatsServer
) -> None:
    """CancelTask works while NATS is down (fast, in the database); once NATS is back, the
    maintenance loop writes the cancellation record that workers of the running jobs check."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task
    jobs = await worker.fetch_exactly(2)
    await worker.event(jobs[0][1], h.K.SUBTASK_EVENT_KIND_STARTED)

    async def running() -> bool:
        return (await h.get_task(alice, task.id)).running_count == 1

    await h.wait_for(running, what="one running")
    private_nats.stop()
    loop = asyncio.get_running_loop()
    started = loop.time()
    cancelled = (await alice.tasks.CancelTask(tasks_pb2.CancelTaskRequest(task_id=task.id))).task
    assert loop.time() - started < 2.0
    assert cancelled.state == tasks_pb2.TASK_STATE_CANCELLED and cancelled.cancelled_count == 1
    private_nats.start()

    async def recorded() -> bool:
        try:
            kv = await worker.js.key_value(bus.CANCELLATIONS_BUCKET)
            return (await kv.get(task.id)).value == b"cancelled"
        except nats.errors.Error:  # not recorded yet (KeyNotFoundError), or NATS not back
            return False

    await h.wait_for(recorded, within=15, what="cancellation record")
