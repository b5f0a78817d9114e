"""PauseTask, ResumeTask and UpdateTask (priority) through gRPC, with a small window so the
order is decided while jobs still wait in the outbox."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


def _update(task_id: str, priority: int, *paths: str) -> tasks_pb2.UpdateTaskRequest:
    return tasks_pb2.UpdateTaskRequest(
        task=tasks_pb2.Task(id=task_id, priority=priority),
        update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
    )


async def test_paused_task_holds_and_resumes(narrow: h.Running, standard: h.FakeWorker) -> None:
    """A paused task's undispatched subtasks are held (its queued ones still run and
    finish), it reports `paused` and TASK_PAUSED with no ETA; after ResumeTask the rest
    is dispatched and the task finishes."""
    alice = narrow.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(5)]))).task
    first = await standard.fetch_exactly(2)
    paused = (await alice.tasks.PauseTask(tasks_pb2.PauseTaskRequest(task_id=task.id))).task
    assert paused.paused
    for message, job in first:
        await standard.succeed(message, job)
    assert await standard.fetch(1, wait=1.0) == []
    got = await h.get_task(alice, task.id)
    assert (got.succeeded_count, got.paused) == (2, True)
    assert got.wait_reason == tasks_pb2.WAIT_REASON_TASK_PAUSED
    assert not got.HasField("eta")
    resumed = (await alice.tasks.ResumeTask(tasks_pb2.ResumeTaskRequest(task_id=task.id))).task
    assert not resumed.paused
    for _ in range(3):
        [(message, job)] = await standard.fetch_exactly(1)
        await standard.succeed(message, job)

    async def done() -> bool:
        return (await h.get_task(alice, task.id)).state == tasks_pb2.TASK_STATE_SUCCEEDED

    await h.wait_for(done, what="the resumed task finished")


async def test_raised_priority_goes_next(narrow: h.Running, standard: h.FakeWorker) -> None:
    """Raising a waiting task's priority with UpdateTask makes its subtasks the next ones
    dispatched, ahead of the same owner's older backlog."""
    alice = narrow.client("alice")
    backlog = (
        await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(8)]))
    ).task
    jobs = await standard.fetch_exactly(2)
    later = (await alice.tasks.CreateTask(h.create_request(values=("x", "y", "z")))).task
    # Same owner, tasks take turns: the later task would get every other job; at
    # priority 9 it gets all of the next ones.
    updated = (await alice.tasks.UpdateTask(_update(later.id, 9, "priority"))).task
    assert updated.priority == 9
    order = []
    for _ in range(3):
        message, job = jobs.pop(0)
        await standard.succeed(message, job)
        jobs += await standard.fetch_exactly(1)
        order.append(jobs[-1][1].task_id)
    assert order == [later.id] * 3, (backlog.id, order)


async def test_update_and_pause_refuse_bad_requests(
    narrow: h.Running, standard: h.FakeWorker
) -> None:
    """UpdateTask needs a mask naming only `priority` and a priority in 0..9; a finished
    task cannot be paused or updated (FAILED_PRECONDITION); another owner's task is
    NOT_FOUND."""
    alice, bob = narrow.client("alice"), narrow.client("bob")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
    cases = [
        (_update(task.id, 3), grpc.StatusCode.INVALID_ARGUMENT, ["update_mask"]),
        (_update(task.id, 3, "task_name"), grpc.StatusCode.INVALID_ARGUMENT, ["update_mask"]),
        (_update(task.id, 10, "priority"), grpc.StatusCode.INVALID_ARGUMENT, ["task.priority"]),
        (_update("", 3, "priority"), grpc.StatusCode.INVALID_ARGUMENT, ["task.id"]),
    ]
    for request, code, fields in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await alice.tasks.UpdateTask(request)
        details = h.status_details(caught.value)
        assert (details["code"], details["fields"]) == (code, fields), request
    for call in (
        bob.tasks.UpdateTask(_update(task.id, 3, "priority")),
        bob.tasks.PauseTask(tasks_pb2.PauseTaskRequest(task_id=task.id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    [(message, job)] = await standard.fetch_exactly(1)
    await standard.succeed(message, job)

    async def done() -> bool:
        return (await h.get_task(alice, task.id)).state == tasks_pb2.TASK_STATE_SUCCEEDED

    await h.wait_for(done, what="task finished")
    for call in (
        alice.tasks.UpdateTask(_update(task.id, 3, "priority")),
        alice.tasks.PauseTask(tasks_pb2.PauseTaskRequest(task_id=task.id)),
        alice.tasks.ResumeTask(tasks_pb2.ResumeTaskRequest(task_id=task.id)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
