"""Operator controls read from key-value buckets: cancelled tasks and paused queues.

Each bucket is mirrored in memory by a watch (one subscription per process, not a lookup
per job). A watch that breaks, and every watch after a reconnect (the server may have lost
its consumer), is started again, and the mirror is rebuilt from the bucket's content.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats.errors
import structlog
from nats.aio.client import Client
from nats.js.kv import KV_DEL, KV_PURGE

from kiln.common import bus

log = structlog.get_logger("imagegen.controls")

PAUSED = b"paused"
_RESTART_DELAY = 1.0
_IDLE_CHECK = 1.0


class KvMirror:
    """The current keys and values of one bucket, kept up to date by a watch."""

    def __init__(self, nc: Client, bucket: str) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.bucket = bucket
        self.values: dict[str, bytes] = {}
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts watching in the background."""
        self._task = asyncio.create_task(self._run(), name=f"watch-{self.bucket}")

    async def stop(self) -> None:
        """Stops watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: watch again
                log.warning("kv_watch_failed", bucket=self.bucket, error=type(error).__name__)
                await asyncio.sleep(_RESTART_DELAY)

    def _reconnects(self) -> int:
        return int(self._nc.stats.get("reconnects", 0))

    async def _watch(self) -> None:
        kv = await self._js.key_value(self.bucket)
        reconnects = self._reconnects()
        watcher = await kv.watchall()
        fresh: dict[str, bytes] = {}
        initial = True
        try:
            while True:
                if self._reconnects() != reconnects:
                    log.info("kv_watch_resync", bucket=self.bucket)
                    return  # the server may have lost the watch's consumer: start over
                try:
                    entry = await watcher.updates(timeout=_IDLE_CHECK)  # type: ignore[no-untyped-call]
                except nats.errors.TimeoutError:
                    continue
                if entry is None:  # the end of the initial content
                    if initial:
                        self.values, initial = fresh, False
                        self.ready.set()
                    continue
                target = fresh if initial else self.values
                if entry.operation in (KV_DEL, KV_PURGE):
                    target.pop(entry.key, None)
                else:
                    target[entry.key] = entry.value or b""
                if initial and entry.delta == 0:
                    self.values, initial = fresh, False
                    self.ready.set()
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]


class Controls:
    """Whether a task is cancelled and whether a queue is paused, answered from memory."""

    def __init__(self, nc: Client) -> None:
        self.cancellations = KvMirror(nc, bus.CANCELLATIONS_BUCKET)
        self.queue_state = KvMirror(nc, bus.QUEUE_STATE_BUCKET)

    async def start(self, wait: float = 10.0) -> None:
        """Starts both watches and waits (up to `wait` s) for their initial content."""
        for mirror in (self.cancellations, self.queue_state):
            mirror.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self.cancellations.ready.wait()
                await self.queue_state.ready.wait()

    async def stop(self) -> None:
        """Stops both watches."""
        await self.cancellations.stop()
        await self.queue_state.stop()

    def is_cancelled(self, task_id: str) -> bool:
        """Whether the task's cancellation is recorded."""
        return task_id in self.cancellations.values

    def is_paused(self, queue: str) -> bool:
        """Whether an operator paused the queue."""
        return self.queue_state.values.get(queue, b"").strip().lower() == PAUSED
