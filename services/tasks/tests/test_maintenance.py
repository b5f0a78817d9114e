"""The maintenance loop: timeouts re-queue or fail, expiry, the reconciler re-drives lost jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from kiln.common import bus
from kiln.common.testing import NatsServer
from kiln.common.testing.tokens import TestSigner
from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h
from tasks.config import TasksConfig


async def _start(cfg: TasksConfig, signer: TestSigner, **overrides: str) -> h.Running:
    return await h.start(h.make_config(cfg.database_url, cfg.nats_url, **overrides), signer)


@pytest.fixture
async def worker_only(private_nats: NatsServer) -> AsyncIterator[h.FakeWorker]:
    """A scripted worker, for tests that start their own server."""
    fake = await h.FakeWorker.connect(private_nats.url)
    yield fake
    await fake.close()


async def test_silent_running_subtask_is_requeued_then_failed(
    tasks_config: TasksConfig, signer: TestSigner, worker_only: h.FakeWorker
) -> None:
    """A running subtask with no sign of life past time limit + grace is re-queued as a new
    attempt (the old attempt's late events change nothing); after max attempts it fails
    with TIMEOUT."""
    server = await _start(
        tasks_config,
        signer,
        JOB_TIME_LIMIT_SECONDS="0.5",
        TASKS_JOB_GRACE_SECONDS="0",
        TASKS_MAX_ATTEMPTS="2",
    )
    worker = worker_only
    try:
        alice = server.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
        [(message, job)] = await worker.fetch_exactly(1)
        await worker.event(job, h.K.SUBTASK_EVENT_KIND_STARTED)
        await message.ack()  # the worker then dies silently
        [(message2, job2)] = await worker.fetch_exactly(1, wait=10)
        assert job2.subtask_id == job.subtask_id and job2.attempt == 2
        assert message2.headers is not None
        assert message2.headers[bus.MSG_ID_HEADER] == f"{job.subtask_id}.2"
        await worker.succeed(None, job)  # the zombie of attempt 1: fenced off
        await worker.event(job2, h.K.SUBTASK_EVENT_KIND_STARTED)
        await message2.ack()

        async def failed() -> tasks_pb2.Task | None:
            got = await h.get_task(alice, task.id)
            return got if got.state == tasks_pb2.TASK_STATE_FAILED else None

        final = await h.wait_for(failed, within=10, what="timed out")
        assert (final.failed_count, final.succeeded_count, final.running_count) == (1, 0, 0)
        page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
        assert page.subtasks[0].error.type == "TIMEOUT" and page.subtasks[0].attempt == 2
    finally:
        await h.stop(server)


async def test_old_pending_work_expires(tasks_config: TasksConfig, signer: TestSigner) -> None:
    """Subtasks waiting longer than the age limit fail with EXPIRED and the task finishes."""
    server = await _start(
        tasks_config, signer, JOB_MAX_AGE_SECONDS="0.5", TASKS_DISPATCH_ENABLED="false"
    )
    try:
        alice = server.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b")))).task

        async def failed() -> tasks_pb2.Task | None:
            got = await h.get_task(alice, task.id)
            return got if got.state == tasks_pb2.TASK_STATE_FAILED else None

        final = await h.wait_for(failed, within=10, what="expired")
        assert final.failed_count == 2
        page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=task.id))
        assert {s.error.type for s in page.subtasks} == {"EXPIRED"}
    finally:
        await h.stop(server)


async def test_reconciler_redrives_a_purged_stream(
    tasks_config: TasksConfig, signer: TestSigner, worker_only: h.FakeWorker
) -> None:
    """Jobs lost by the broker (the JOBS stream purged after dispatch) are re-published by
    the reconciler with the next generation in their message id, and the task completes."""
    server = await _start(tasks_config, signer, TASKS_RECONCILE_AFTER_SECONDS="1")
    worker = worker_only
    try:
        alice = server.client("alice")
        task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c")))).task

        async def queued() -> bool:
            info = await worker.js.stream_info(bus.JOBS_STREAM)
            return info.state.messages == 3

        await h.wait_for(queued, what="published")
        await worker.js.purge_stream(bus.JOBS_STREAM)
        jobs = await worker.fetch_exactly(3, wait=15)
        for message, job in jobs:
            assert job.generation >= 1
            assert message.headers is not None
            assert message.headers[bus.MSG_ID_HEADER] == f"{job.subtask_id}.1.g{job.generation}"
            await worker.succeed(message, job)

        async def done() -> tasks_pb2.Task | None:
            got = await h.get_task(alice, task.id)
            return got if got.state == tasks_pb2.TASK_STATE_SUCCEEDED else None

        final = await h.wait_for(done, what="succeeded")
        assert final.succeeded_count == 3
    finally:
        await h.stop(server)
