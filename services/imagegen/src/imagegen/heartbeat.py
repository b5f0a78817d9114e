"""The worker's heartbeat in the `workers` bucket, which forgets silent workers by TTL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import os
import re
import secrets
import socket

import structlog
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from imagegen import imaging
from kiln.common import bus, timestamps
from kiln.imagegen.v1 import jobs_pb2

log = structlog.get_logger("imagegen.heartbeat")

_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_=-]")


def new_worker_id() -> str:
    """`<host>-<pid>-<random>`, usable as a KV key."""
    host = _KEY_UNSAFE.sub("_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclasses.dataclass
class WorkerStats:
    """Counters the heartbeat reports."""

    in_flight: int = 0
    processed: int = 0
    failed: int = 0


class Heartbeat:
    """Writes a `WorkerHeartbeat` every `interval` seconds; deletes it on `stop()`."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        worker_id: str,
        queues: tuple[str, ...],
        concurrency: int,
        stats: WorkerStats,
        interval: float,
    ) -> None:
        self._js = js
        self.worker_id = worker_id
        self._queues = queues
        self._concurrency = concurrency
        self._stats = stats
        self._interval = interval
        self._started = datetime.datetime.now(datetime.UTC)
        self._task: asyncio.Task[None] | None = None
        self._kv: KeyValue | None = None

    def snapshot(self) -> jobs_pb2.WorkerHeartbeat:
        """The heartbeat as of now."""
        return jobs_pb2.WorkerHeartbeat(
            worker_id=self.worker_id,
            queues=list(self._queues),
            concurrency=self._concurrency,
            in_flight=self._stats.in_flight,
            processed=self._stats.processed,
            failed=self._stats.failed,
            version=imaging.KILN_VERSION,
            start_time=timestamps.timestamp(self._started),
            time=timestamps.now(),
            hostname=socket.gethostname(),
        )

    async def beat(self) -> None:
        """Writes one heartbeat now."""
        if self._kv is None:
            self._kv = await self._js.key_value(bus.WORKERS_BUCKET)
        await self._kv.put(self.worker_id, self.snapshot().SerializeToString())

    def start(self) -> None:
        """Beats in the background."""
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as error:  # a missed beat is retried next tick
                log.warning("heartbeat_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval)

    async def stop(self) -> None:
        """Stops beating and removes this worker from the bucket."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            kv = await self._js.key_value(bus.WORKERS_BUCKET)
            await kv.delete(self.worker_id)
        except Exception as error:  # the TTL removes it anyway
            log.warning("heartbeat_delete_failed", error=type(error).__name__)
