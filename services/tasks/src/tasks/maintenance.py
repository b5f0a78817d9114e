"""The maintenance loop: timeouts, expiry, the reconciler and pruning.

Every pass runs each step in its own transaction, guarded by a transaction-level advisory
lock, so with several replicas only one does a step at a time, and every step is a set of
conditional updates that would be harmless twice anyway.

- Timeouts: a subtask running with no sign of life (no event folded) for longer than the
  job time limit plus a grace period is re-queued as a new attempt, or failed (TIMEOUT)
  once it had `max_attempts`. The new attempt fences off the old worker's late events.
- Expiry: a subtask still pending or queued past the job age limit fails (EXPIRED).
- Reconciler: a subtask queued or running with no sign of life for `reconcile_after` is
  re-published with the next generation (a new message id): the broker may have lost it.
- Pruning: sent outbox rows and finished webhook deliveries past their retention.
- Cancellation records: re-written for cancelled tasks that still have jobs out, in case
  the write after CancelTask failed (NATS down).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import job_errors
from tasks import fold, lifecycle

log = structlog.get_logger("tasks.maintenance")

_LOCK_KEY = 0x7461736B  # "task"
_LIMIT = 1000

_STALE_RUNNING = f"""
SELECT id, attempt FROM tasks.subtasks
WHERE state IN {lifecycle.REQUEUE_FROM_SQL} AND last_seen < now() - make_interval(secs => :age)
ORDER BY last_seen LIMIT :limit FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - only lifecycle's fixed state names are interpolated

_REQUEUE = f"""
UPDATE tasks.subtasks SET attempt = attempt + 1, generation = 0,
    state = {lifecycle.REQUEUE_TO_SQL}, last_delivery = 0, last_sequence = 0, step = 0,
    last_seen = now(), error_type = '{job_errors.TIMEOUT}', error_message = :message
WHERE id = ANY(CAST(:ids AS uuid[])) AND state IN {lifecycle.REQUEUE_FROM_SQL}
RETURNING id, task_id
"""  # noqa: S608 - only lifecycle's fixed state and error names are interpolated

_OUTBOX_FOR = """
INSERT INTO tasks.outbox (subtask_id, task_id, owner_id, queue, priority, attempt, generation)
SELECT s.id, s.task_id, s.owner_id, s.queue, t.priority, s.attempt, s.generation
FROM tasks.subtasks s JOIN tasks.tasks t ON t.id = s.task_id
WHERE s.id = ANY(CAST(:ids AS uuid[]))
"""

_EXPIRED = f"""
SELECT id, attempt FROM tasks.subtasks
WHERE state IN {lifecycle.EXPIRE_SQL} AND create_time < now() - make_interval(secs => :age)
LIMIT :limit FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - only lifecycle's fixed state names are interpolated

_SILENT = f"""
UPDATE tasks.subtasks SET generation = generation + 1, last_seen = now(),
    last_delivery = 0, last_sequence = 0
WHERE id IN (
    SELECT id FROM tasks.subtasks
    WHERE state IN {lifecycle.IN_FLIGHT_SQL} AND last_seen < now() - make_interval(secs => :age)
    AND NOT EXISTS (
        SELECT 1 FROM tasks.outbox o WHERE o.subtask_id = tasks.subtasks.id
        AND o.sent_time IS NULL
    )
    LIMIT :limit FOR UPDATE SKIP LOCKED
)
RETURNING id
"""  # noqa: S608 - only lifecycle's fixed state names are interpolated


_CANCELLED_LIVE = f"""
SELECT DISTINCT s.task_id FROM tasks.subtasks s JOIN tasks.tasks t ON t.id = s.task_id
WHERE s.state IN {lifecycle.IN_FLIGHT_SQL} AND t.state = 'cancelled' LIMIT :limit
"""  # noqa: S608 - only lifecycle's fixed state names are interpolated


@dataclasses.dataclass(frozen=True)
class Limits:
    """The ages the maintenance loop acts on, in seconds."""

    time_limit: float
    grace: float
    age_limit: float
    max_attempts: int
    reconcile_after: float
    outbox_retention: float
    webhook_retention: float


@dataclasses.dataclass
class PassReport:
    """What one pass did."""

    requeued: int = 0
    timed_out: int = 0
    expired: int = 0
    republished: int = 0
    pruned: int = 0
    cancellations: int = 0


class Maintenance:
    """Runs maintenance passes on an interval."""

    def __init__(
        self,
        engine: AsyncEngine,
        limits: Limits,
        *,
        interval: float,
        announce: Callable[[fold.Outcome], Awaitable[None]],
        wake_dispatcher: Callable[[], None],
        record_cancellation: Callable[[str], Awaitable[bool]] | None = None,
    ) -> None:
        self._engine = engine
        self._limits = limits
        self._interval = interval
        self._announce = announce
        self._wake_dispatcher = wake_dispatcher
        self._record_cancellation = record_cancellation

    async def run(self) -> None:
        """The loop."""
        while True:
            try:
                report = await self.run_once()
                if report != PassReport():
                    log.info("maintenance_pass", **dataclasses.asdict(report))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("maintenance_failed", error=type(exc).__name__)
            await asyncio.sleep(self._interval)

    async def run_once(self) -> PassReport:
        """One pass over every step."""
        report = PassReport()
        report.requeued, report.timed_out = await self._step(self._timeouts)
        report.expired = (await self._step(self._expire))[0]
        report.republished = (await self._step(self._reconcile))[0]
        report.pruned = (await self._step(self._prune))[0]
        report.cancellations = await self._recancel()
        if report.requeued or report.republished:
            self._wake_dispatcher()
        return report

    async def _step(
        self, step: Callable[[AsyncConnection], Awaitable[tuple[int, int, fold.Outcome]]]
    ) -> tuple[int, int]:
        async with self._engine.begin() as conn:
            locked = await conn.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": _LOCK_KEY}
            )
            if not locked:
                return 0, 0
            first, second, outcome = await step(conn)
        if outcome.versions:
            await self._announce(outcome)
        return first, second

    async def _timeouts(self, conn: AsyncConnection) -> tuple[int, int, fold.Outcome]:
        limits = self._limits
        age = limits.time_limit + limits.grace
        rows = (await conn.execute(text(_STALE_RUNNING), {"age": age, "limit": _LIMIT})).all()
        if not rows:
            return 0, 0, fold.Outcome()
        retry = [str(r[0]) for r in rows if r[1] < limits.max_attempts]
        give_up = [(str(r[0]), int(r[1])) for r in rows if r[1] >= limits.max_attempts]
        outcome = fold.Outcome()
        if retry:
            message = f"no sign of life for {age:.0f} s; re-queued as a new attempt"
            requeued = (
                await conn.execute(text(_REQUEUE), {"ids": retry, "message": message})
            ).all()
            await conn.execute(text(_OUTBOX_FOR), {"ids": retry})
            deltas: dict[str, fold.TaskDelta] = {}
            for subtask_id, task_id in requeued:
                delta = deltas.setdefault(str(task_id), fold.new_delta())
                delta.running -= 1
                delta.subtasks.append(str(subtask_id))
            outcome = await fold.settle(conn, deltas)
        if give_up:
            message = (
                f"no sign of life for {age:.0f} s after {limits.max_attempts} attempts; giving up"
            )
            changes = [
                fold.Change(
                    sid,
                    attempt,
                    terminal=lifecycle.FAILED,
                    error_type=job_errors.TIMEOUT,
                    error_message=message,
                )
                for sid, attempt in give_up
            ]
            failed = await fold.apply(conn, changes)
            outcome.versions.update(failed.versions)
        return len(retry), len(give_up), outcome

    async def _expire(self, conn: AsyncConnection) -> tuple[int, int, fold.Outcome]:
        rows = (
            await conn.execute(text(_EXPIRED), {"age": self._limits.age_limit, "limit": _LIMIT})
        ).all()
        if not rows:
            return 0, 0, fold.Outcome()
        ids = [str(r[0]) for r in rows]
        await conn.execute(
            text(
                "DELETE FROM tasks.outbox WHERE subtask_id = ANY(CAST(:ids AS uuid[])) "
                "AND sent_time IS NULL"
            ),
            {"ids": ids},
        )
        message = f"waited longer than the age limit of {self._limits.age_limit:.0f} s"
        changes = [
            fold.Change(
                str(r[0]),
                int(r[1]),
                terminal=lifecycle.FAILED,
                error_type=job_errors.EXPIRED,
                error_message=message,
            )
            for r in rows
        ]
        outcome = await fold.apply(conn, changes)
        return len(rows), 0, outcome

    async def _reconcile(self, conn: AsyncConnection) -> tuple[int, int, fold.Outcome]:
        rows = (
            await conn.execute(
                text(_SILENT), {"age": self._limits.reconcile_after, "limit": _LIMIT}
            )
        ).all()
        if rows:
            ids = [str(r[0]) for r in rows]
            await conn.execute(text(_OUTBOX_FOR), {"ids": ids})
            log.info("subtasks_republished", count=len(ids))
        return len(rows), 0, fold.Outcome()

    async def _recancel(self) -> int:
        """Writes the cancellation record again for cancelled tasks that still have jobs out
        (the write after CancelTask may have failed during a NATS outage); idempotent."""
        if self._record_cancellation is None:
            return 0
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text(_CANCELLED_LIVE), {"limit": 100})).all()
        written = 0
        for (task_id,) in rows:
            written += await self._record_cancellation(str(task_id))
        return written

    async def _prune(self, conn: AsyncConnection) -> tuple[int, int, fold.Outcome]:
        outbox = await conn.execute(
            text(
                "DELETE FROM tasks.outbox WHERE sent_time IS NOT NULL "
                "AND sent_time < now() - make_interval(secs => :age)"
            ),
            {"age": self._limits.outbox_retention},
        )
        hooks = await conn.execute(
            text(
                "WITH gone AS (DELETE FROM tasks.webhook_deliveries WHERE state <> 'pending' "
                "AND update_time < now() - make_interval(secs => :age) RETURNING id) "
                "DELETE FROM tasks.webhook_attempts WHERE delivery_id IN (SELECT id FROM gone)"
            ),
            {"age": self._limits.webhook_retention},
        )
        return int(outbox.rowcount or 0) + int(hooks.rowcount or 0), 0, fold.Outcome()
