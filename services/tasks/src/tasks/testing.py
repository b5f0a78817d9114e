"""Test helpers for the tasks service (used by its tests, the cross-service tests and the
bench): an in-process server, authenticated stubs, and a
scripted worker that pulls jobs and publishes events the way imagegen workers do."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from kiln.common import bus, config, jetstream
from kiln.common.testing import NatsServer, nats_server
from kiln.common.testing.tokens import TestSigner
from kiln.imagegen.v1 import jobs_pb2
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks import app
from tasks.config import TasksConfig

__all__ = ["NatsServer", "TasksConfig", "TestSigner"]

K = jobs_pb2.SubtaskEventKind

FAST = {
    "LOG_LEVEL": "warning",
    "LOG_FORMAT": "console",
    "GRPC_HOST": "127.0.0.1",
    "GRPC_PORT": "0",
    "SHUTDOWN_DELAY_SECONDS": "0",
    "GRACE_PERIOD_SECONDS": "0",
    "TASKS_WEBHOOK_ALLOW_PRIVATE": "true",
    "TASKS_DISPATCH_POLL_SECONDS": "0.1",
    # The scripted FakeWorker writes no heartbeat: without this, its queue would count as
    # unserved and get only a few jobs at a time (tests of the window set their own).
    "TASKS_DISPATCH_UNSERVED_WINDOW": "1000",
    "TASKS_DISPATCH_MAX_BACKOFF_SECONDS": "0.3",
    "TASKS_MAINTENANCE_INTERVAL_SECONDS": "0.3",
    "TASKS_WEBHOOK_POLL_SECONDS": "0.1",
    "TASKS_WEBHOOK_BACKOFF_SECONDS": "0.1",
    "TASKS_WATCH_REFRESH_SECONDS": "1",
    "JOB_ACK_WAIT_SECONDS": "2",
    "METRICS_PORT": "-1",
}


def make_config(database_url: str, nats_url: str, **overrides: str) -> TasksConfig:
    """A config for tests: short intervals, private webhooks allowed."""
    env = {**FAST, "DATABASE_URL": database_url, "NATS_URL": nats_url, **overrides}
    # The tasks role's credentials (they win over the harness superuser's in NATS_URL, which
    # stays so that a test can make another config from this one's nats_url).
    role = nats_server.service_env(env["NATS_URL"], "tasks")
    env.update({k: v for k, v in role.items() if k != "NATS_URL"})
    return config.load(TasksConfig, environ=env, env_file=None)


@dataclasses.dataclass
class Client_:
    """Stubs bound to one user's token."""

    tasks: Any
    system: Any
    metadata: tuple[tuple[str, str], ...]


@dataclasses.dataclass
class Running:
    """An in-process tasks server with clients for a few users."""

    app: app.TasksApp
    channel: grpc.aio.Channel
    signer: TestSigner

    def client(self, user_id: str = "alice", role: str = "user") -> Client_:
        """Stubs that send a token of `user_id` with `role`."""
        token = self.signer.token(user_id=user_id, role=role)
        return Client_(
            tasks=_Authed(tasks_pb2_grpc.TaskServiceStub(self.channel), token),
            system=_Authed(tasks_pb2_grpc.SystemServiceStub(self.channel), token),
            metadata=(("authorization", f"Bearer {token}"),),
        )


class _Authed:
    """A stub whose every call carries a bearer token."""

    def __init__(self, stub: Any, token: str) -> None:
        self._stub = stub
        self._metadata = (("authorization", f"Bearer {token}"),)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", 30)
            return method(request, metadata=self._metadata, **kwargs)

        return call


async def start(cfg: TasksConfig, signer: TestSigner) -> Running:
    """Builds and starts the service in-process."""
    built = await app.build(cfg, verifier=signer.verifier())
    port = await built.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Running(built, channel, signer)


async def stop(running: Running) -> None:
    """Stops the server and closes everything."""
    await running.channel.close()
    await running.app.stop()


def create_request(
    name: str = "cats",
    values: Sequence[str] = ("red", "blue"),
    images: int = 1,
    **fields: Any,
) -> tasks_pb2.CreateTaskRequest:
    """A valid CreateTask request: `a {color} cat` over `values`."""
    return tasks_pb2.CreateTaskRequest(
        task_name=name,
        prompt_template="a {color} cat",
        variables={"color": tasks_pb2.VariableValues(values=list(values))},
        images_per_combination=images,
        **fields,
    )


class FakeWorker:
    """Acts as an imagegen worker: pulls jobs of one queue and reports events."""

    def __init__(self, nc: Client, queue: str = "standard", worker_id: str = "w1") -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.queue = queue
        self.worker_id = worker_id
        self._subscription: Any = None
        self._sequence = 0

    @classmethod
    async def connect(
        cls, nats_url: str, queue: str = "standard", settings: bus.BusSettings | None = None
    ) -> FakeWorker:
        """Connects, provisions the worker side of the bus and binds to the queue."""
        nc = await nats.connect(nats_url)
        worker = cls(nc, queue)
        settings = settings or bus.BusSettings(job_ack_wait=2.0)
        await jetstream.provision(worker.js, bus.worker_topology(bus.QUEUES, settings))
        worker._subscription = await worker.js.pull_subscribe_bind(
            durable=bus.worker_consumer(queue), stream=bus.JOBS_STREAM
        )
        return worker

    async def close(self) -> None:
        """Disconnects."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
        await self.nc.close()

    async def fetch(self, count: int = 1, wait: float = 5.0) -> list[tuple[Msg, jobs_pb2.Job]]:
        """Up to `count` jobs, waiting up to `timeout` for the first."""
        try:
            messages = await self._subscription.fetch(count, timeout=wait)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        jobs = []
        for message in messages:
            job = jobs_pb2.Job()
            job.ParseFromString(message.data)
            jobs.append((message, job))
        return jobs

    async def fetch_exactly(self, count: int, wait: float = 10.0) -> list[tuple[Msg, jobs_pb2.Job]]:
        """Exactly `count` jobs (fails the test after `wait` seconds)."""
        found: list[tuple[Msg, jobs_pb2.Job]] = []
        deadline = asyncio.get_running_loop().time() + wait
        while len(found) < count:
            left = deadline - asyncio.get_running_loop().time()
            assert left > 0, f"got {len(found)} of {count} jobs"
            found += await self.fetch(count - len(found), wait=min(left, 1.0))
        return found

    async def event(
        self,
        job: jobs_pb2.Job,
        kind: int,
        *,
        delivery: int = 1,
        sequence: int | None = None,
        event_id: str | None = None,
        **fields: Any,
    ) -> jobs_pb2.SubtaskEvent:
        """Publishes one event about `job`."""
        if sequence is None:
            self._sequence += 1
            sequence = self._sequence
        event = jobs_pb2.SubtaskEvent(
            event_id=event_id or uuid.uuid4().hex,
            subtask_id=job.subtask_id,
            task_id=job.task_id,
            attempt=job.attempt,
            sequence=sequence,
            kind=kind,  # type: ignore[arg-type]
            worker_id=self.worker_id,
            delivery=delivery,
            **fields,
        )
        event.time.GetCurrentTime()
        await self.js.publish(
            bus.events_subject(job.task_id),
            event.SerializeToString(),
            headers={bus.MSG_ID_HEADER: event.event_id},
        )
        return event

    async def succeed(
        self, message: Msg | None, job: jobs_pb2.Job, image: bytes | None = None
    ) -> None:
        """STARTED, the image stored, SUCCEEDED, ack."""
        await self.event(job, K.SUBTASK_EVENT_KIND_STARTED)
        data = image if image is not None else f"image of {job.subtask_id}".encode()
        name = f"tasks/{job.task_id}/{job.subtask_id}.png"
        thumb = f"tasks/{job.task_id}/{job.subtask_id}.thumb.webp"
        store = await self.js.object_store(bus.IMAGES_STORE)
        await store.put(name, data)
        await store.put(thumb, b"thumb")
        result = jobs_pb2.JobResult(
            object_name=name,
            thumbnail_object_name=thumb,
            content_type="image/png",
            size_bytes=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            width=job.width,
            height=job.height,
            model="fake",
        )
        result.render_duration.FromMilliseconds(10)
        await self.event(job, K.SUBTASK_EVENT_KIND_SUCCEEDED, result=result)
        if message is not None:
            await message.ack()

    async def fail(self, message: Msg | None, job: jobs_pb2.Job, error_type: str = "BAD") -> None:
        """STARTED, a non-retryable FAILED, term."""
        await self.event(job, K.SUBTASK_EVENT_KIND_STARTED)
        await self.event(
            job,
            K.SUBTASK_EVENT_KIND_FAILED,
            error=jobs_pb2.JobError(type=error_type, message="it broke", retryable=False),
            will_retry=False,
        )
        if message is not None:
            await message.term()


async def wait_for(
    predicate: Any, within: float = 10.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Polls an async predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def get_task(client: Client_, task_id: str) -> tasks_pb2.Task:
    """GetTask's task."""
    response = await client.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id))
    task: tasks_pb2.Task = response.task
    return task


def status_details(error: grpc.aio.AioRpcError) -> Mapping[str, Any]:
    """The code and field violations of a failed call."""
    from google.rpc import error_details_pb2, status_pb2  # noqa: PLC0415

    violations: list[str] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    violations += [v.field for v in bad.field_violations]
    return {"code": error.code(), "fields": violations, "message": error.details()}
