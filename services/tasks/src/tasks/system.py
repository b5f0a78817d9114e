"""SystemService's use cases: platform stats, queue state, workers, pausing queues.

Every call needs the admin role. Queue figures come from JetStream (the worker consumer of
each queue) and the outbox; worker figures from the heartbeat bucket.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import structlog
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import bus, errors, principal
from kiln.imagegen.v1 import jobs_pb2
from tasks import estimates, lifecycle, model

log = structlog.get_logger("tasks.system")

PAUSED, ACTIVE = b"paused", b"active"


@dataclasses.dataclass(frozen=True)
class SystemStats:
    """Platform-wide counts."""

    tasks_by_state: dict[str, int]
    subtasks_by_state: dict[str, int]
    images_last_minute: int
    images_per_minute_last_hour: float
    outbox_backlog: int
    live_workers: int


@dataclasses.dataclass(frozen=True)
class QueueStats:
    """One queue's state."""

    queue: str
    pending: int = 0
    in_flight: int = 0
    redelivered: int = 0
    consumers: int = 0
    oldest_age: float = 0.0
    paused: bool = False
    waiting_dispatch: int = 0


class System:
    """SystemService's use cases."""

    def __init__(self, engine: AsyncEngine, js: JetStreamContext) -> None:
        self._engine = engine
        self._js = js

    async def stats(self) -> SystemStats:
        """Counts of tasks and subtasks by state, throughput, backlog and live workers."""
        principal.require_admin()
        async with self._engine.connect() as conn:
            tasks = await _counts(
                conn,
                "SELECT state, count(*) FROM tasks.tasks WHERE NOT is_deleted GROUP BY state",
            )
            subtasks = await _counts(
                conn,
                "SELECT s.state, count(*) FROM tasks.subtasks s JOIN tasks.tasks t "
                "ON t.id = s.task_id WHERE NOT t.is_deleted AND NOT s.superseded "
                "GROUP BY s.state",
            )
            row = (
                await conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE finish_time > now() - interval '1 minute'), "
                        "count(*) FROM tasks.subtasks WHERE state = 'succeeded' "
                        "AND finish_time > now() - interval '1 hour'"
                    )
                )
            ).one()
            backlog = await conn.scalar(
                text("SELECT count(*) FROM tasks.outbox WHERE sent_time IS NULL")
            )
        workers = await estimates.read_heartbeats(self._js)
        return SystemStats(
            tasks_by_state={s: int(tasks.get(s, 0)) for s in model.TASK_STATES},
            subtasks_by_state={s: int(subtasks.get(s, 0)) for s in lifecycle.STATES},
            images_last_minute=int(row[0]),
            images_per_minute_last_hour=int(row[1]) / 60.0,
            outbox_backlog=int(backlog or 0),
            live_workers=len(workers),
        )

    async def queues(self) -> list[QueueStats]:
        """Every queue's state."""
        principal.require_admin()
        return [await self.queue(q) for q in bus.QUEUES]

    async def queue(self, queue: str) -> QueueStats:
        """One queue's state from its consumer, the outbox and the pause flag."""
        async with self._engine.connect() as conn:
            waiting, oldest = (
                await conn.execute(
                    text(
                        "SELECT count(*), min(create_time) FROM tasks.outbox "
                        "WHERE queue = :q AND sent_time IS NULL"
                    ),
                    {"q": queue},
                )
            ).one()
            oldest_queued = await conn.scalar(
                text(
                    "SELECT min(queue_time) FROM tasks.subtasks "
                    "WHERE queue = :q AND state = 'queued'"
                ),
                {"q": queue},
            )
        pending = in_flight = redelivered = consumers = 0
        try:
            info = await self._js.consumer_info(bus.JOBS_STREAM, bus.worker_consumer(queue))
            pending = int(info.num_pending or 0)
            in_flight = int(info.num_ack_pending or 0)
            redelivered = int(info.num_redelivered or 0)
            consumers = int(info.num_waiting or 0)
        except js_errors.NotFoundError:
            pass  # no worker of this queue ever started
        candidates = [t for t in (oldest, oldest_queued) if t is not None]
        age = 0.0
        if candidates:
            age = max(0.0, (dt.datetime.now(dt.UTC) - min(candidates)).total_seconds())
        return QueueStats(
            queue=queue,
            pending=pending,
            in_flight=in_flight,
            redelivered=redelivered,
            consumers=consumers,
            oldest_age=age,
            paused=await self._paused(queue),
            waiting_dispatch=int(waiting or 0),
        )

    async def _paused(self, queue: str) -> bool:
        kv = await self._js.key_value(bus.QUEUE_STATE_BUCKET)
        try:
            entry = await kv.get(queue)
        except js_errors.KeyNotFoundError:
            return False
        return entry.value == PAUSED

    async def workers(self) -> list[jobs_pb2.WorkerHeartbeat]:
        """Workers with a live heartbeat, by id."""
        principal.require_admin()
        beats = await estimates.read_heartbeats(self._js)
        return sorted(beats, key=lambda b: b.worker_id)

    async def set_paused(self, queue: str, paused: bool) -> QueueStats:
        """Pauses or resumes a queue (workers honour the flag)."""
        caller = principal.require_admin()
        if queue not in bus.QUEUES:
            raise errors.InvalidArgument.field(
                "queue", f"must name a queue ({', '.join(bus.QUEUES)})"
            )
        kv = await self._js.key_value(bus.QUEUE_STATE_BUCKET)
        await kv.put(queue, PAUSED if paused else ACTIVE)
        log.info("queue_paused" if paused else "queue_resumed", queue=queue, by=caller.user_id)
        return await self.queue(queue)


async def _counts(conn: AsyncConnection, sql: str) -> dict[str, int]:
    return {str(r[0]): int(r[1]) for r in await conn.execute(text(sql))}
