"""The dispatcher killed (-9) between publishing jobs and marking them sent loses nothing and
duplicates nothing: a real `python -m tasks` process is killed mid-backlog and restarted."""

from __future__ import annotations

import asyncio

import nats
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from kiln.common import bus, db
from kiln.common.testing import NatsServer
from kiln.common.testing.services import ServiceProcess
from kiln.common.testing.tokens import TestSigner
from tasks import app
from tasks import testing as h

TOTAL = 4000


async def test_dispatcher_crash_between_publish_and_mark(
    database_url: str, private_nats: NatsServer
) -> None:
    """After a kill -9 while jobs are published but not yet marked sent, a restart publishes
    the rest: the JOBS stream holds exactly one message per subtask and every outbox row
    ends marked sent."""
    cfg = h.make_config(database_url, private_nats.url, TASKS_DISPATCH_ENABLED="false")
    app.migrate(cfg)
    signer = TestSigner()
    creator = await h.start(cfg, signer)
    alice = creator.client("alice")
    for i in range(2):
        values = [str(v) for v in range(TOTAL // 4)]
        await alice.tasks.CreateTask(h.create_request(name=f"t{i}", values=values, images=2))
    await h.stop(creator)

    env = {
        **{k: v for k, v in h.FAST.items() if k not in ("GRPC_HOST", "GRPC_PORT")},
        "LOG_FORMAT": "json",
        "DATABASE_URL": database_url,
        "NATS_URL": private_nats.url,
        "TASKS_DISPATCH_WINDOW": "100000",
        "TASKS_DISPATCH_UNSERVED_WINDOW": "100000",  # no worker runs here
        "TASKS_DISPATCH_BATCH": "500",
        "TASKS_MAINTENANCE_ENABLED": "false",
        "AUTH_TARGET": "127.0.0.1:1",
    }
    engine = create_async_engine(db.sqlalchemy_url(database_url))
    nc = await nats.connect(private_nats.url)
    js = nc.jetstream()
    process = ServiceProcess("tasks", env, name="tasks-dispatcher")

    async def counts() -> tuple[int, int]:
        try:
            messages = (await js.stream_info(bus.JOBS_STREAM)).state.messages
        except nats.errors.Error:  # no stream yet, or NATS busy: nothing counted yet
            messages = 0
        async with engine.connect() as conn:
            sent = await conn.scalar(
                text("SELECT count(*) FROM tasks.outbox WHERE sent_time IS NOT NULL")
            )
        return int(messages), int(sent or 0)

    try:
        hit_window = False
        for _ in range(3):
            process.start()
            # Kill as soon as the stream is ahead of the database: published, not marked.
            deadline = asyncio.get_running_loop().time() + 30
            while asyncio.get_running_loop().time() < deadline:
                messages, sent = await counts()
                if messages > sent and messages < TOTAL:
                    process.kill()
                    hit_window = True
                    break
                if sent == TOTAL:
                    break
                await asyncio.sleep(0.002)
            process.kill()
            if hit_window:
                break
        assert hit_window, "never caught the dispatcher between publish and mark"
        messages_at_kill, sent_at_kill = await counts()
        assert sent_at_kill < TOTAL
        process.start()

        async def all_sent() -> bool:
            return (await counts())[1] == TOTAL

        await h.wait_for(all_sent, within=30, what="every row sent")
        # A row is marked sent only after JetStream acknowledged its publish, so once every
        # row is sent the stream already holds everything ever published for them.
        messages, sent = await counts()
        assert (messages, sent) == (TOTAL, TOTAL), (messages_at_kill, sent_at_kill)
        async with engine.connect() as conn:
            states = dict(
                (r[0], r[1])
                for r in await conn.execute(
                    text("SELECT state, count(*) FROM tasks.subtasks GROUP BY state")
                )
            )
        assert states == {"queued": TOTAL}
    finally:
        process.close()
        await nc.close()
        await engine.dispose()
