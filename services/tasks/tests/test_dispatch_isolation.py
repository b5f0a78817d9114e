"""One row or one queue that cannot be dispatched never holds up anyone else's work."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from kiln.common.testing import NatsServer
from kiln.common.testing.tokens import TestSigner
from kiln.tasks.v1 import tasks_pb2
from tasks import app
from tasks import testing as h

MAX_PAYLOAD = 2048
"""The test server's max payload: a job with a 3,000-character prompt is larger."""


class SmallPayloadNats(NatsServer):
    """A nats-server whose `max_payload` (set in its config file) is MAX_PAYLOAD bytes."""

    def _config(self) -> str:
        return super()._config() + f"max_payload: {MAX_PAYLOAD}\n"


@pytest.fixture
def small_nats() -> Iterator[NatsServer]:
    """A private NATS server with a small max payload."""
    with SmallPayloadNats() as server:
        yield server


async def test_unpublishable_job_fails_alone(
    database_url: str, signer: TestSigner, small_nats: NatsServer
) -> None:
    """A job larger than the server's max payload fails its own subtask (UNPUBLISHABLE,
    with the sizes in the message; the task's counters and state follow), while a task of
    another owner created after it in the same queue, and one in a later queue, are
    dispatched at once."""
    cfg = h.make_config(database_url, small_nats.url)
    app.migrate(cfg)
    server = await h.start(cfg, signer)
    standard = await h.FakeWorker.connect(small_nats.url, queue="standard")
    lumina = await h.FakeWorker.connect(small_nats.url, queue="lumina")
    try:
        alice, bob = server.client("alice"), server.client("bob")
        # CreateTask refuses tasks whose jobs could not be published, so the oversized row
        # is made the way one could still arise (created under a larger max payload, or
        # before that check): its prompt grows in the database while the standard queue's
        # round lock is held, so no round sees it before it is too large.
        async with server.app.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(7203, hashtext('standard'))"))
            bad = (await alice.tasks.CreateTask(h.create_request(values=("red",)))).task
            async with server.app.engine.begin() as edit:
                await edit.execute(
                    text(
                        "UPDATE tasks.subtasks SET prompt = prompt || repeat(' very', 600) "
                        "WHERE task_id = CAST(:task AS uuid)"
                    ),
                    {"task": bad.id},
                )
        good = (await bob.tasks.CreateTask(h.create_request(values=("blue",)))).task
        later_queue = h.create_request(values=("green",))
        later_queue.settings.queue = tasks_pb2.QUEUE_LUMINA
        other = (await bob.tasks.CreateTask(later_queue)).task

        [(_, job)] = await standard.fetch_exactly(1, wait=10)
        assert job.task_id == good.id
        [(_, job)] = await lumina.fetch_exactly(1, wait=10)
        assert job.task_id == other.id

        async def failed() -> tasks_pb2.Task | None:
            task = await h.get_task(alice, bad.id)
            return task if task.state == tasks_pb2.TASK_STATE_FAILED else None

        task = await h.wait_for(failed, within=10, what="the unpublishable task failed")
        assert (task.failed_count, task.succeeded_count, task.all_subtasks_completed) == (
            1,
            0,
            True,
        )
        [subtask] = (
            await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=bad.id))
        ).subtasks
        assert subtask.state == tasks_pb2.SUBTASK_STATE_FAILED
        assert subtask.error.type == "UNPUBLISHABLE"
        assert str(MAX_PAYLOAD) in subtask.error.message
        assert server.app.dispatcher.stats.unpublishable == 1
    finally:
        await standard.close()
        await lumina.close()
        await h.stop(server)


async def test_a_stuck_queue_round_does_not_delay_other_queues(
    tasks_config: h.TasksConfig, signer: TestSigner, private_nats: NatsServer
) -> None:
    """While one queue's round cannot proceed (another replica holds that queue's round
    lock, as a stuck round would), jobs of other queues are dispatched at once, and the
    held queue's jobs go out as soon as the lock is released."""
    server = await h.start(tasks_config, signer)
    standard = await h.FakeWorker.connect(private_nats.url, queue="standard")
    lumina = await h.FakeWorker.connect(private_nats.url, queue="lumina")
    try:
        alice = server.client("alice")
        async with server.app.engine.begin() as conn:
            await conn.execute(text("SELECT pg_advisory_xact_lock(7203, hashtext('standard'))"))
            held = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
            request = h.create_request(values=("b",))
            request.settings.queue = tasks_pb2.QUEUE_LUMINA
            other = (await alice.tasks.CreateTask(request)).task
            [(_, job)] = await lumina.fetch_exactly(1, wait=5)
            assert job.task_id == other.id
            assert await standard.fetch(1, wait=0.5) == []
        [(_, job)] = await standard.fetch_exactly(1, wait=5)
        assert job.task_id == held.id
    finally:
        await standard.close()
        await lumina.close()
        await h.stop(server)
