"""ETAs and worker capacity: measured render times per queue, live worker heartbeats and
paused queues.

All are cached for a few seconds, so reading a task or a dispatch round does not scan the
buckets or aggregate render times on every call.
"""

from __future__ import annotations

import asyncio
import time

import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncEngine

from kiln.common import bus
from kiln.imagegen.v1 import jobs_pb2
from tasks import store

log = structlog.get_logger("tasks.estimates")

_TTL = 5.0
# A queue seen without workers is looked at again sooner: until a new worker is seen, the
# dispatcher releases only the small unserved window.
_UNSERVED_TTL = 1.0
_RENDER_WINDOW = 3600.0
_BUS_TIMEOUT = 1.0


async def read_heartbeats(js: JetStreamContext) -> list[jobs_pb2.WorkerHeartbeat]:
    """Every live worker heartbeat in the workers bucket."""
    kv = await js.key_value(bus.WORKERS_BUCKET)
    try:
        keys = await kv.keys()
    except Exception:  # nats raises NoKeysError for an empty bucket
        return []
    beats = []
    for key in keys:
        try:
            entry = await kv.get(key)
        except Exception:  # noqa: S112 - expired between keys() and get(): skip it
            continue
        if entry.value:
            beat = jobs_pb2.WorkerHeartbeat()
            try:
                beat.ParseFromString(entry.value)
            except Exception:
                log.warning("heartbeat_undecodable", key=key)
                continue
            beats.append(beat)
    return beats


class Estimator:
    """Estimates how long work of a queue takes with the workers alive now."""

    def __init__(self, engine: AsyncEngine, nc: Client, default_render: float) -> None:
        self._engine = engine
        self._nc = nc
        self._js = nc.jetstream()
        self._default = default_render
        self._render: dict[str, float] = {}
        self._slots: dict[str, int] = {}
        self._paused: set[str] = set()
        self._fresh_until = 0.0
        self._slots_read_at = 0.0
        self._refreshing: asyncio.Future[None] | None = None

    async def _refresh(self) -> None:
        """Reads the figures again once they are `_TTL` old. One read at a time: the
        callers that find them stale meanwhile (every watch round and read of a busy
        replica) wait for that read instead of each running the same queries."""
        if time.monotonic() < self._fresh_until:
            return
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh_now())
            self._refreshing.add_done_callback(self._refreshed)
        # Shielded: a caller going away must not cancel the read the others wait for.
        await asyncio.shield(self._refreshing)

    def _refreshed(self, future: asyncio.Future[None]) -> None:
        self._refreshing = None
        if not future.cancelled():
            future.exception()  # logged where it happened; do not log it as unretrieved

    async def _refresh_now(self) -> None:
        try:
            async with self._engine.connect() as conn:
                self._render = await store.mean_render_seconds(conn, _RENDER_WINDOW)
        except Exception as exc:
            log.warning("render_stats_unavailable", error=type(exc).__name__)
        await self._refresh_slots()
        self._fresh_until = time.monotonic() + _TTL

    async def _refresh_slots(self) -> None:
        # During a NATS outage keep the last known slots rather than wait for timeouts:
        # reads and CreateTask must stay fast without the broker.
        if not self._nc.is_connected:
            return
        try:
            beats = await asyncio.wait_for(read_heartbeats(self._js), timeout=_BUS_TIMEOUT)
        except Exception as exc:
            log.warning("heartbeats_unavailable", error=type(exc).__name__)
            return
        self._slots = slots_per_queue(beats)
        self._slots_read_at = time.monotonic()
        try:
            self._paused = await asyncio.wait_for(read_paused(self._js), timeout=_BUS_TIMEOUT)
        except Exception as exc:
            log.warning("queue_state_unavailable", error=type(exc).__name__)

    async def seconds(self, queue: str, jobs: int) -> float:
        """Time to render `jobs` more jobs of `queue` (one worker slot assumed if none live)."""
        await self._refresh()
        per_job = self._render.get(queue, self._default)
        slots = max(1, self._slots.get(queue, 0))
        return per_job * max(0, jobs) / slots

    async def capacity(self, queue: str) -> tuple[int, float]:
        """(worker slots serving `queue` now, seconds per render, measured or default)."""
        await self._refresh()
        if not self._slots.get(queue) and time.monotonic() - self._slots_read_at > _UNSERVED_TTL:
            await self._refresh_slots()
        return self._slots.get(queue, 0), self._render.get(queue, self._default)

    async def queue_paused(self, queue: str) -> bool:
        """Whether an admin paused the queue (as of the last refresh)."""
        await self._refresh()
        return queue in self._paused


def slots_per_queue(beats: list[jobs_pb2.WorkerHeartbeat]) -> dict[str, int]:
    """Worker slots per queue. A worker's slots are shared by its queues, so each counts
    all of them: a queue may use them all while the others are idle."""
    slots: dict[str, int] = {}
    for beat in beats:
        for queue in beat.queues:
            slots[queue] = slots.get(queue, 0) + max(1, beat.concurrency)
    return slots


async def read_paused(js: JetStreamContext) -> set[str]:
    """The queues an admin paused (the queue-state bucket)."""
    kv = await js.key_value(bus.QUEUE_STATE_BUCKET)
    try:
        keys = await kv.keys()
    except Exception:  # nats raises NoKeysError for an empty bucket
        return set()
    paused = set()
    for key in keys:
        try:
            entry = await kv.get(key)
        except Exception:  # noqa: S112 - deleted between keys() and get(): skip it
            continue
        if entry.value == b"paused":
            paused.add(key)
    return paused
