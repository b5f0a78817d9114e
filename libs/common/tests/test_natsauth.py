"""T19: the bus accepts only Kiln's services, each with only its role's permissions.

Every test runs against a real nats-server started by the harness with the authorization
block of `kiln.common.natsauth` (the one Kubernetes and `make run` use). A denied operation
is recognised by the server's "Permissions Violation" error for that subject (and, where it
would write, by the write not having happened), so no test waits for a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client
from nats.js import api

from kiln.common import bus, jetstream, natsauth
from kiln.common.settings import NatsSettings
from kiln.common.testing import NatsServer

SETTINGS = bus.BusSettings()
K8S_AUTH_CONF = Path(__file__).parents[3] / "deploy" / "k8s" / "base" / "nats-auth.conf"


class Session:
    """One role's connection, remembering every permission violation the server reported."""

    def __init__(self) -> None:
        self.nc: Client | None = None
        self.violations: list[str] = []
        self.changed = asyncio.Event()

    async def on_error(self, error: Exception) -> None:
        if "permissions violation" in str(error).lower():
            self.violations.append(str(error))
            self.changed.set()

    @property
    def js(self) -> nats.js.JetStreamContext:
        assert self.nc is not None
        return self.nc.jetstream(timeout=2)

    async def denied(self, subject: str, operation: Awaitable[object]) -> None:
        """Runs `operation` until the server reports a violation naming `subject`."""
        task = asyncio.ensure_future(operation)
        quoted = f'"{subject}"'.lower()  # nats-py lowercases the server's error text
        try:
            async with asyncio.timeout(3):
                while not any(quoted in v.lower() for v in self.violations):
                    self.changed.clear()
                    if task.done():
                        assert task.exception() is not None, f"{subject} was allowed"
                    await asyncio.wait([task, asyncio.ensure_future(self.changed.wait())],
                                       return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


@contextlib.asynccontextmanager
async def session(server: NatsServer, role: str | None) -> AsyncIterator[Session]:
    """`role`'s connection through kiln.common.jetstream.connect (None: the superuser)."""
    result = Session()
    if role is None:
        result.nc = await nats.connect(server.url, error_cb=result.on_error)
    else:
        user, password = server.role_credentials(role)
        settings = NatsSettings(
            nats_url=server.anonymous_url, nats_user=user, nats_password=password
        )
        result.nc = await jetstream.connect(settings, role)
        result.nc._error_cb = result.on_error  # watch violations in the test
    try:
        yield result
    finally:
        await result.nc.close()


async def _refused(url: str, user: str | None = None, password: str | None = None) -> None:
    with pytest.raises(nats.errors.Error) as raised:
        await nats.connect(
            url, user=user, password=password, allow_reconnect=False, connect_timeout=2
        )
    assert "authorization violation" in str(raised.value).lower()


async def test_anonymous_and_wrong_credentials_are_refused(private_nats: NatsServer) -> None:
    """A client without credentials is refused, and so is a role's name with another role's
    password: nobody connects as a role without that role's own secret."""
    await _refused(private_nats.anonymous_url)
    _user, tasks_password = private_nats.role_credentials(natsauth.TASKS)
    await _refused(private_nats.anonymous_url, user=natsauth.IMAGEGEN, password=tasks_password)
    await _refused(private_nats.anonymous_url, user=natsauth.TASKS, password="guess")


async def test_each_role_does_its_own_work_and_nothing_else(private_nats: NatsServer) -> None:
    """The tasks role provisions the bus, publishes jobs and writes controls; a worker takes
    and acknowledges jobs, reports events and heartbeats, stores images and reads controls;
    auth writes account changes that tasks and workers watch. Each role is refused every
    operation of the others: a worker cannot publish jobs, write cancellations or pauses,
    change the topology or read another role's replies; tasks cannot forge worker events or
    images; no one but auth writes accounts."""
    async with (
        session(private_nats, natsauth.TASKS) as tasks,
        session(private_nats, natsauth.IMAGEGEN) as worker,
        session(private_nats, natsauth.AUTH) as auth,
        session(private_nats, None) as admin,
    ):
        # A worker may create nothing, so it cannot provision the bus.
        await worker.denied(
            f"$JS.API.STREAM.CREATE.{bus.JOBS_STREAM}",
            jetstream.provision(worker.js, bus.worker_topology(bus.QUEUES, SETTINGS)),
        )
        await jetstream.provision(tasks.js, bus.tasks_topology(SETTINGS))
        await asyncio.wait_for(
            jetstream.wait_until_provisioned(
                worker.js, bus.worker_topology(bus.QUEUES, SETTINGS), poll=0.1
            ),
            5,
        )

        # Allowed: the job's whole life, role by role.
        await tasks.js.publish(bus.jobs_subject("standard"), b"job")
        pull = await worker.js.pull_subscribe_bind(
            durable=bus.worker_consumer("standard"), stream=bus.JOBS_STREAM
        )
        [job] = await pull.fetch(1, timeout=2)
        await job.in_progress()
        await worker.js.publish(bus.events_subject("t1"), b"started")
        await (await worker.js.key_value(bus.WORKERS_BUCKET)).put("w1", b"beat")
        images = await worker.js.object_store(bus.IMAGES_STORE)
        await images.put("t1/s1.png", b"png bytes")
        await images.put("t1/s1.png", b"png bytes again")  # a retry replaces it
        await (await worker.js.key_value(bus.POLISH_CACHE_BUCKET)).create("p", b"polished")
        await job.ack_sync()
        await (await tasks.js.key_value(bus.CANCELLATIONS_BUCKET)).put("t9", b"1")
        await (await tasks.js.key_value(bus.QUEUE_STATE_BUCKET)).put("standard", b"paused")
        cancellations = await worker.js.key_value(bus.CANCELLATIONS_BUCKET)
        assert (await cancellations.get("t9")).value == b"1"
        watch = await (await worker.js.key_value(bus.QUEUE_STATE_BUCKET)).watchall()
        entry = await watch.updates(timeout=2)  # type: ignore[no-untyped-call]
        assert entry is not None and entry.value == b"paused"
        await watch.stop()  # type: ignore[no-untyped-call]
        events = await tasks.js.pull_subscribe_bind(
            durable=bus.PROGRESS_CONSUMER, stream=bus.EVENTS_STREAM
        )
        [event] = await events.fetch(1, timeout=2)
        await event.ack_sync()
        stored = await (await tasks.js.object_store(bus.IMAGES_STORE)).get("t1/s1.png")
        assert stored.data == b"png bytes again"
        heartbeats = await (await tasks.js.key_value(bus.WORKERS_BUCKET)).keys()
        assert heartbeats == ["w1"]
        accounts = await auth.js.create_key_value(
            api.KeyValueConfig(bucket=natsauth.AUTH_ACCOUNTS_BUCKET, history=1)
        )
        await accounts.put("user-1", b"demoted")
        for reader in (tasks, worker):
            kv = await reader.js.key_value(natsauth.AUTH_ACCOUNTS_BUCKET)
            assert (await kv.get("user-1")).value == b"demoted"
            account_watch = await kv.watchall()
            assert (await account_watch.updates(timeout=2)).value == b"demoted"  # type: ignore[no-untyped-call]
            await account_watch.stop()  # type: ignore[no-untyped-call]

        # Denied to a worker: jobs, the tasks' controls, the topology, others' replies.
        await worker.denied("jobs.standard", worker.js.publish("jobs.standard", b"forged"))
        for bucket in (bus.CANCELLATIONS_BUCKET, bus.QUEUE_STATE_BUCKET):
            kv = await worker.js.key_value(bucket)
            await worker.denied(f"$KV.{bucket}.x", kv.put("x", b"forged"))
        await worker.denied(
            f"$JS.API.STREAM.PURGE.{bus.JOBS_STREAM}", worker.js.purge_stream(bus.JOBS_STREAM)
        )
        await worker.denied(
            f"$JS.API.STREAM.DELETE.{bus.EVENTS_STREAM}",
            worker.js.delete_stream(bus.EVENTS_STREAM),
        )
        await worker.denied(
            f"$JS.API.CONSUMER.MSG.NEXT.{bus.EVENTS_STREAM}.{bus.PROGRESS_CONSUMER}",
            _fetch_one(worker, bus.EVENTS_STREAM, bus.PROGRESS_CONSUMER),
        )
        await worker.denied("_INBOX.tasks.>", _subscribe(worker, "_INBOX.tasks.>"))
        await worker.denied("events.subtasks.>", _subscribe(worker, "events.subtasks.>"))
        accounts_for_worker = await worker.js.key_value(natsauth.AUTH_ACCOUNTS_BUCKET)
        await worker.denied(
            f"$KV.{natsauth.AUTH_ACCOUNTS_BUCKET}.user-1",
            accounts_for_worker.put("user-1", b"admin"),
        )

        # Denied to tasks: what workers and auth report.
        await tasks.denied("events.subtasks.t1", tasks.js.publish("events.subtasks.t1", b"x"))
        forged_chunk = f"$O.{bus.IMAGES_STORE}.C.forged"
        await tasks.denied(forged_chunk, _publish(tasks, forged_chunk))
        accounts_for_tasks = await tasks.js.key_value(natsauth.AUTH_ACCOUNTS_BUCKET)
        await tasks.denied(
            f"$KV.{natsauth.AUTH_ACCOUNTS_BUCKET}.user-1",
            accounts_for_tasks.put("user-1", b"admin"),
        )
        await tasks.denied(
            f"$JS.API.STREAM.DELETE.KV_{natsauth.AUTH_ACCOUNTS_BUCKET}",
            tasks.js.delete_stream(f"KV_{natsauth.AUTH_ACCOUNTS_BUCKET}"),
        )
        await tasks.denied("_INBOX.imagegen.>", _subscribe(tasks, "_INBOX.imagegen.>"))

        # Denied to auth: everything but its bucket.
        await auth.denied("jobs.standard", auth.js.publish("jobs.standard", b"forged"))
        await auth.denied(
            f"$JS.API.STREAM.INFO.{bus.JOBS_STREAM}", auth.js.stream_info(bus.JOBS_STREAM)
        )
        await auth.denied(
            f"$KV.{bus.CANCELLATIONS_BUCKET}.x", _publish(auth, "$KV.cancellations.x")
        )

        # None of the forged writes landed.
        jobs = await admin.js.stream_info(bus.JOBS_STREAM)
        assert jobs.state.messages == 0
        control = await admin.js.key_value(bus.CANCELLATIONS_BUCKET)
        assert await control.keys() == ["t9"]
        assert (
            await (await admin.js.key_value(natsauth.AUTH_ACCOUNTS_BUCKET)).get("user-1")
        ).value == b"demoted"


async def _fetch_one(session: Session, stream: str, consumer: str) -> None:
    pull = await session.js.pull_subscribe_bind(durable=consumer, stream=stream)
    await pull.fetch(1, timeout=2)


async def _subscribe(session: Session, subject: str) -> None:
    assert session.nc is not None
    await session.nc.subscribe(subject)
    await session.nc.flush()
    await asyncio.sleep(3)  # the violation arrives asynchronously


async def _publish(session: Session, subject: str) -> None:
    assert session.nc is not None
    await session.nc.publish(subject, b"forged")
    await session.nc.flush()
    await asyncio.sleep(3)


def test_kubernetes_nats_config_grants_the_same_permissions() -> None:
    """The authorization block the Kubernetes NATS servers load is the one this module
    renders (passwords from the environment), so deployments get the tested permissions."""
    assert K8S_AUTH_CONF.read_text() == natsauth.authorization_config()


async def test_a_service_reads_its_password_from_a_file(
    private_nats: NatsServer, tmp_path: Path
) -> None:
    """NATS_PASSWORD_FILE (a mounted Secret) works like NATS_PASSWORD; the connection is
    the role's own (its health probe, JetStream account info, is allowed)."""
    user, password = private_nats.role_credentials(natsauth.IMAGEGEN)
    secret = tmp_path / "nats-password"
    secret.write_text(password + "\n")
    settings = NatsSettings(
        nats_url=private_nats.anonymous_url, nats_user=user, nats_password_file=str(secret)
    )
    client = await jetstream.connect(settings, natsauth.IMAGEGEN)
    try:
        assert await jetstream.ping(client)
    finally:
        await client.close()
