"""Dispatch fairness and priority with a bounded in-flight window."""

from __future__ import annotations

from sqlalchemy import text

from kiln.common.testing import NatsServer
from kiln.common.testing.tokens import TestSigner
from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h
from tasks.config import TasksConfig


async def _diagnose(server: h.Running, done: list[str]) -> str:
    async with server.app.engine.connect() as conn:
        states = (
            await conn.execute(
                text("SELECT state, count(*) FROM tasks.subtasks GROUP BY state ORDER BY state")
            )
        ).all()
        locks = (
            await conn.execute(
                text(
                    "SELECT state, wait_event_type, left(query, 60) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        ).all()
    app = server.app
    loops = [(t.get_name(), t.done()) for t in app.loops]
    return (
        f"stuck after {len(done)} jobs; subtasks {states}; "
        f"folded {app.progress_consumer.folded}; dispatched {app.dispatcher.stats}; "
        f"loops {loops}; sessions {locks}"
    )


async def test_small_task_is_not_starved_by_a_huge_one(
    tasks_config: TasksConfig, signer: TestSigner, private_nats: NatsServer
) -> None:
    """With a window of 20 jobs in flight, bob's 1-image task submitted after alice's
    2,000-image task is rendered before alice's 200th image (round-robin across owners)."""
    cfg = h.make_config(
        tasks_config.database_url, tasks_config.nats_url, TASKS_DISPATCH_WINDOW="20"
    )
    server = await h.start(cfg, signer)
    worker = await h.FakeWorker.connect(private_nats.url)
    try:
        alice, bob = server.client("alice"), server.client("bob")
        big = (
            await alice.tasks.CreateTask(
                h.create_request(values=[str(i) for i in range(1000)], images=2)
            )
        ).task
        small = (await bob.tasks.CreateTask(h.create_request(values=("x",)))).task
        rendered: list[str] = []
        for _ in range(100):
            if small.id in rendered:
                break
            assert len(rendered) < 200, "the small task starved"
            for message, job in await worker.fetch(5, wait=5):
                await worker.succeed(message, job)
                rendered.append(job.task_id)
        else:
            raise AssertionError(await _diagnose(server, rendered))
        assert rendered.count(big.id) < 60
        got = await h.get_task(alice, big.id)
        assert got.state == tasks_pb2.TASK_STATE_RUNNING
    finally:
        await worker.close()
        await h.stop(server)


async def test_higher_priority_dispatched_first(
    tasks_config: TasksConfig, signer: TestSigner, private_nats: NatsServer
) -> None:
    """Within a queue, waiting outbox rows of a higher-priority task are published before
    older lower-priority ones when the window frees up."""
    cfg = h.make_config(tasks_config.database_url, tasks_config.nats_url, TASKS_DISPATCH_WINDOW="5")
    server = await h.start(cfg, signer)
    worker = await h.FakeWorker.connect(private_nats.url)
    try:
        alice = server.client("alice")
        low = (
            await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(30)]))
        ).task
        urgent = (
            await alice.tasks.CreateTask(h.create_request(values=("u1", "u2"), priority=9))
        ).task
        order: list[str] = []
        for _ in range(100):
            if urgent.id in order:
                break
            for message, job in await worker.fetch(1, wait=5):
                await worker.succeed(message, job)
                order.append(job.task_id)
        else:
            raise AssertionError(await _diagnose(server, order))
        assert order.count(low.id) <= 6
    finally:
        await worker.close()
        await h.stop(server)
