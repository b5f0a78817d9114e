"""GetTask and ListTasks reuse their conversions per task version (`tasks.readcache`), and
never serve another owner's task, an old state, or a deleted task as if it were live."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from kiln.tasks.v1 import tasks_pb2
from tasks import model, readcache
from tasks import testing as h


async def _listed(client: h.Client_) -> dict[str, tasks_pb2.Task]:
    response = await client.tasks.ListTasks(tasks_pb2.ListTasksRequest())
    return {t.id: t for t in response.tasks}


async def test_a_task_changed_after_it_was_cached_is_read_fresh(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """Reads of an unchanged task reuse one conversion; after a subtask succeeds and after
    a pause, GetTask and ListTasks show the new version, counts and wait reason."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=["a", "b"]))).task
    first = await h.get_task(alice, task.id)
    assert await h.get_task(alice, task.id) == first
    assert (await _listed(alice))[task.id].version == first.version
    [(message, job), _] = await worker.fetch_exactly(2)
    await worker.succeed(message, job)

    async def one_succeeded() -> tasks_pb2.Task | None:
        got = await h.get_task(alice, task.id)
        return got if got.succeeded_count == 1 else None

    after = await h.wait_for(one_succeeded, what="one subtask succeeded")
    assert after.version > first.version
    assert after.state == tasks_pb2.TASK_STATE_RUNNING
    listed = (await _listed(alice))[task.id]
    assert (listed.version, listed.succeeded_count) == (after.version, 1)
    await alice.tasks.PauseTask(tasks_pb2.PauseTaskRequest(task_id=task.id))
    paused = await h.get_task(alice, task.id)
    assert paused.paused and paused.version > after.version
    assert paused.wait_reason == tasks_pb2.WAIT_REASON_TASK_PAUSED
    assert (await _listed(alice))[task.id].paused


async def test_a_soft_deleted_task_reads_as_deleted_after_being_cached(
    server: h.Running,
) -> None:
    """GetTask after DeleteTask says is_deleted (a new version), and ListTasks drops it,
    although both had read and converted the live task before."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request())).task
    live = await h.get_task(alice, task.id)
    assert task.id in await _listed(alice)
    await alice.tasks.DeleteTask(tasks_pb2.DeleteTaskRequest(task_id=task.id))
    deleted = await h.get_task(alice, task.id)
    assert deleted.is_deleted and deleted.version > live.version
    assert task.id not in await _listed(alice)


async def test_another_owner_still_gets_not_found_for_a_cached_task(server: h.Running) -> None:
    """A task alice has read (so its conversion is cached) stays NOT_FOUND for bob, and is
    not in bob's list."""
    alice, bob = server.client("alice"), server.client("bob")
    task = (await alice.tasks.CreateTask(h.create_request())).task
    await h.get_task(alice, task.id)
    await _listed(alice)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await h.get_task(bob, task.id)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert task.id not in await _listed(bob)


def _row(task_id: str, version: int, **changes: object) -> dict[str, object]:
    task = model.Task(
        id=task_id,
        owner_id="alice",
        request_id=None,
        task_name="n" * 1000,
        tags=[],
        prompt_template="a {x}",
        variables={"x": ["1"]},
        zip_groups=[],
        images_per_combination=1,
        ratio="1:1",
        seed=None,
        use_polish=False,
        queue="standard",
        negative_prompt="",
        output_format="png",
        priority=0,
        webhook_url=None,
        webhook_events=[],
        state=model.PENDING,
        total_images=1,
        succeeded_count=0,
        failed_count=0,
        cancelled_count=0,
        running_count=0,
        is_deleted=False,
        create_time=None,
        start_time=None,
        finish_time=None,
        update_time=None,
        version=version,
    )
    row = {f: getattr(task, f) for f in task.__dataclass_fields__}
    row.update(changes)
    return row


def test_estimates_are_set_on_a_copy_and_the_cache_stays_within_its_budget() -> None:
    """The per-call estimates never reach the shared message; a row of a new version is
    converted anew; old entries go once the byte budget is used up."""
    reads = readcache.TaskReads(budget_bytes=20_000)
    task = reads.task(_row("00000000-0000-0000-0000-000000000001", 1))
    shared = reads.message(task)
    estimated = dataclasses.replace(
        task, queue_position=7, eta_seconds=3.0, wait_reason=model.WAIT_QUEUED
    )
    message = reads.message(estimated)
    assert (message.queue_position, message.eta.seconds) == (7, 3)
    assert message.wait_reason == tasks_pb2.WAIT_REASON_QUEUED
    assert reads.message(task) is shared and shared.queue_position == 0
    assert not shared.HasField("eta")
    newer = reads.task(_row(task.id, 2, succeeded_count=1, state=model.SUCCEEDED))
    assert reads.message(newer).succeeded_count == 1
    assert reads.message(newer).state == tasks_pb2.TASK_STATE_SUCCEEDED
    for n in range(100):
        reads.message(reads.task(_row(f"00000000-0000-0000-0000-{n:012d}", 5)))
    assert 1 < len(reads) < 100
