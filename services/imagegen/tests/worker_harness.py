"""Test helpers: a worker config with short limits, and a stand-in for the tasks service.

`TasksSide` publishes Job messages the way the tasks dispatcher does (with `Nats-Msg-Id`),
records every SubtaskEvent from `events.subtasks.>`, and reads back stored images.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator, Callable, Mapping

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from imagegen.app import Rendering
from imagegen.config import ImagegenConfig
from kiln.common import bus, config, jetstream, subtask_events
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2

FAST_ENV = {
    "JOB_ACK_WAIT_SECONDS": "2",
    "JOB_MAX_DELIVER": "4",
    "WORKER_HEARTBEAT_TTL_SECONDS": "3",
    "WORKER_QUEUES": "high_priority,standard",
    "WORKER_CONCURRENCY": "2",
    "IMAGEGEN_RETRY_BACKOFF_MIN_SECONDS": "0.2",
    "IMAGEGEN_RETRY_BACKOFF_MAX_SECONDS": "1",
    "IMAGEGEN_PAUSED_DELAY_SECONDS": "0.5",
    "IMAGEGEN_PUBLISH_RETRY_DELAY_SECONDS": "0.5",
    "IMAGEGEN_FETCH_WAIT_SECONDS": "0.2",
    "IMAGEGEN_CHECK_INTERVAL_SECONDS": "0.1",
    "IMAGEGEN_PROGRESS_INTERVAL_SECONDS": "0",
    "GRPC_PORT": "0",
    "METRICS_PORT": "0",
    "LOG_LEVEL": "warning",
}

Kind = jobs_pb2.SubtaskEventKind


def worker_config(nats_url: str, **env: str) -> ImagegenConfig:
    """A config with the short test limits, `env` on top (variable name -> value)."""
    return config.load(
        ImagegenConfig, environ={**FAST_ENV, "NATS_URL": nats_url, **env}, env_file=None
    )


def make_job(
    prompt: str = "a lighthouse at dusk",
    *,
    queue: str = "standard",
    attempt: int = 1,
    width: int = 96,
    height: int = 64,
    seed: int = 7,
    image_format: int = imagegen_pb2.IMAGE_FORMAT_PNG,
    use_polish: bool = False,
    created: datetime.datetime | None = None,
    task_id: str | None = None,
) -> jobs_pb2.Job:
    """A job as the tasks dispatcher builds it."""
    job = jobs_pb2.Job(
        subtask_id=str(uuid.uuid4()),
        task_id=task_id or str(uuid.uuid4()),
        owner_id="user-1",
        queue=queue,
        attempt=attempt,
        prompt=prompt,
        width=width,
        height=height,
        seed=seed,
        use_polish=use_polish,
        format=image_format,  # type: ignore[arg-type]
        ratio="3:2",
    )
    job.create_time.FromDatetime(created or datetime.datetime.now(datetime.UTC))
    return job


class TasksSide:
    """Publishes jobs and collects events like the tasks service would."""

    def __init__(self, nc: Client, settings: ImagegenConfig) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.settings = settings
        self.events: list[jobs_pb2.SubtaskEvent] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        """Provisions the bus and starts listening to events."""
        await jetstream.provision(self.js, bus.worker_topology(bus.QUEUES, self.settings))

        async def received(msg: Msg) -> None:
            self.events.extend(subtask_events.decode(msg.data, msg.headers))
            self._changed.set()

        await self.nc.subscribe(bus.EVENTS_WILDCARD, cb=received)
        await self.nc.flush()

    async def publish(self, job: jobs_pb2.Job, data: bytes | None = None) -> None:
        """Publishes `job` (or raw `data` in its place) on its queue's subject."""
        await self.js.publish(
            bus.jobs_subject(job.queue),
            job.SerializeToString() if data is None else data,
            headers={bus.MSG_ID_HEADER: f"{job.subtask_id}.{job.attempt}"},
        )

    def of(self, subtask_id: str, kind: int | None = None) -> list[jobs_pb2.SubtaskEvent]:
        """Events of one subtask (of one kind), in arrival order."""
        return [
            e
            for e in self.events
            if e.subtask_id == subtask_id and (kind is None or e.kind == kind)
        ]

    async def wait_for(
        self, subtask_id: str, kind: int, count: int = 1, within: float = 15.0
    ) -> list[jobs_pb2.SubtaskEvent]:
        """Waits until `count` events of `kind` arrived for the subtask."""
        async with asyncio.timeout(within):
            while len(self.of(subtask_id, kind)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of(subtask_id, kind)

    async def wait_terminal(self, subtask_id: str, within: float = 15.0) -> jobs_pb2.SubtaskEvent:
        """The first event that ends the subtask (succeeded, cancelled, failed for good)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.of(subtask_id):
                    if event.kind in (
                        Kind.SUBTASK_EVENT_KIND_SUCCEEDED,
                        Kind.SUBTASK_EVENT_KIND_CANCELLED,
                    ):
                        return event
                    if event.kind == Kind.SUBTASK_EVENT_KIND_FAILED and not event.will_retry:
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def stored_events(self, subtask_id: str) -> list[jobs_pb2.SubtaskEvent]:
        """The subtask's events as the EVENTS stream holds them (survives reconnects)."""
        info = await self.js.stream_info(bus.EVENTS_STREAM)
        found = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            raw = await self.js.get_msg(bus.EVENTS_STREAM, sequence)
            for event in subtask_events.decode(raw.data or b"", raw.headers):
                if event.subtask_id == subtask_id:
                    found.append(event)
        return found

    async def jobs_left(self) -> int:
        """Messages still in the JOBS stream."""
        info = await self.js.stream_info(bus.JOBS_STREAM)
        return int(info.state.messages)

    async def wait_jobs_left(self, count: int = 0, within: float = 10.0) -> None:
        """Waits until the JOBS stream holds `count` messages (a work-queue stream drops a
        job once it is acknowledged or terminated): a condition, not a sleep."""
        async with asyncio.timeout(within):
            while await self.jobs_left() != count:  # noqa: ASYNC110 - stream state, no event
                await asyncio.sleep(0.02)

    async def read_object(self, name: str) -> bytes:
        """An object's bytes from the image store."""
        store = await self.js.object_store(bus.IMAGES_STORE)
        result = await store.get(name)
        assert result.data is not None
        return bytes(result.data)

    async def object_names(self) -> list[str]:
        """Names of every object in the image store."""
        store = await self.js.object_store(bus.IMAGES_STORE)
        try:
            return [info.name for info in await store.list() if info.name]
        except nats.js.errors.NotFoundError:  # nats-py's answer for an empty store
            return []

    async def kv_put(self, bucket: str, key: str, value: bytes) -> None:
        """Writes a key, as the tasks service does to cancel or pause."""
        kv = await self.js.key_value(bucket)
        await kv.put(key, value)


async def until(condition: Callable[[], object], within: float = 10.0) -> None:
    """Waits until `condition()` holds, polling in-process state that has no event."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls state that has no event
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def tasks_side(nats_url: str, settings: ImagegenConfig) -> AsyncIterator[TasksSide]:
    """A connected TasksSide."""
    nc = await nats.connect(nats_url)
    side = TasksSide(nc, settings)
    await side.start()
    try:
        yield side
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running_worker(settings: ImagegenConfig, grace: float = 2.0) -> AsyncIterator[Rendering]:
    """An in-process worker (no gRPC server), stopped at the end."""
    nc = await nats.connect(settings.nats_url)
    runtime = await Rendering.start(settings, nc)
    try:
        yield runtime
    finally:
        await runtime.stop(grace)
        await nc.close()


@contextlib.asynccontextmanager
async def bus_with_worker(
    nats_url: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[TasksSide, Rendering]]:
    """The tasks side and one in-process worker on `nats_url`."""
    settings = worker_config(nats_url, **dict(env or {}))
    async with tasks_side(nats_url, settings) as side, running_worker(settings) as runtime:
        yield side, runtime
