"""The dispatcher: outbox rows -> jobs on JetStream, fairly, and safe to crash anywhere.

One round of one queue is one transaction, serialized across tasks replicas by an advisory
lock per queue (so the window and the order are exact with several replicas):
  1. count the queue's jobs in flight (subtasks queued or running); the room is the
     window (`ranking.window`: live worker slots plus a throughput margin) minus that;
  2. pick up to the room of waiting outbox rows in fair order (`ranking`) and lock them;
  3. fail the rows whose job cannot be published (larger than the server's max payload)
     with UNPUBLISHABLE, and publish the others as `Job`s with `Nats-Msg-Id` =
     `<subtask>.<attempt>[.g<generation>]`;
  4. note the dispatch time of their tasks (priority aging), mark the published rows sent
     and their subtasks queued, and commit.

Rounds run when rows are committed (`wake`), as soon as jobs end while a queue had rows
left (`room_freed`), and over every queue each poll interval (rows committed by other
replicas). A queue whose round fails (database or NATS errors) is retried with its own
capped backoff; the other queues' rounds go on.

A crash between 3 and 4 leaves the rows unsent; they are published again with the same
message ids and JetStream's duplicate window drops the copies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

import structlog
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import backoff, bus, job_errors, pull, vocabulary
from kiln.imagegen.v1 import jobs_pb2
from tasks import fold, lifecycle, ranking

log = structlog.get_logger("tasks.dispatch")

_SLOW_ROUND = 2.0
_PUBLISH_TIMEOUT = 5.0

_IN_FLIGHT = (
    "SELECT count(*) FROM tasks.subtasks WHERE queue = :q "  # noqa: S608 - fixed state names
    f"AND state IN {lifecycle.IN_FLIGHT_SQL}"
)

# Serializes the rounds of one queue across replicas; released at commit. The key is the
# queue name's hash in a namespace of its own. Never waited for: a busy queue is tried
# again shortly, and the other queues' rounds go on meanwhile.
_QUEUE_LOCK = "SELECT pg_try_advisory_xact_lock(7203, hashtext(:q))"
_LOCK_RETRY = 0.05

# Re-publications (generation > 0) are of jobs already counted in flight: they bypass the
# window and the fair order (otherwise lost jobs filling the window would block it).
_PICK_REPUBLISH = """
SELECT o.id, o.subtask_id, o.attempt, o.generation, s.task_id, s.owner_id, s.queue, s.idx,
    s.prompt, s.negative_prompt, s.width, s.height, s.seed, s.use_polish, s.output_format,
    s.ratio, s.create_time, t.reuse_results, t.share_results
FROM tasks.outbox o JOIN tasks.subtasks s ON s.id = o.subtask_id
    JOIN tasks.tasks t ON t.id = s.task_id
WHERE o.queue = :q AND o.sent_time IS NULL AND o.generation > 0
ORDER BY o.id LIMIT :limit
FOR UPDATE OF o SKIP LOCKED
"""

# Run after the round's commit, holding nothing else: a round holds outbox rows, which
# CancelTask takes after the task row, so a round must never wait for a task row. A task
# row locked now (by a fold of its events) is skipped: its aging is only a hint, and the
# dispatcher must not wait for folds.
_NOTE_DISPATCHED = """
WITH locked AS (
    SELECT id FROM tasks.tasks WHERE id = ANY(CAST(:ids AS uuid[]))
    ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE tasks.tasks t SET dispatch_time = now() FROM locked WHERE t.id = locked.id
"""

_DROP_ROWS = "DELETE FROM tasks.outbox WHERE id = ANY(CAST(:ids AS bigint[])) AND sent_time IS NULL"

_HEADERS_OVERHEAD = len(b"NATS/1.0\r\n\r\n")


# Subtask rows are locked in id order, as the fold locks them, so the two never deadlock
# when a job's events are folded before its row is marked sent.
_MARK_SENT = f"""
WITH sent AS (
    UPDATE tasks.outbox SET sent_time = now() WHERE id = ANY(CAST(:ids AS bigint[]))
    RETURNING subtask_id, attempt
), waiting AS (
    SELECT s.id FROM tasks.subtasks s JOIN sent ON s.id = sent.subtask_id
    WHERE s.attempt = sent.attempt AND s.state IN {lifecycle.DISPATCH_FROM_SQL}
    ORDER BY s.id FOR UPDATE OF s
)
UPDATE tasks.subtasks s SET state = {lifecycle.DISPATCH_TO_SQL},
    queue_time = COALESCE(s.queue_time, now()), last_seen = now()
FROM waiting WHERE s.id = waiting.id AND s.state IN {lifecycle.DISPATCH_FROM_SQL}
"""  # noqa: S608 - only lifecycle's fixed state names are interpolated


def message_id(subtask_id: str, attempt: int, generation: int) -> str:
    """The job's `Nats-Msg-Id`: the same for every publication of one attempt's generation."""
    base = f"{subtask_id}.{attempt}"
    return base if generation == 0 else f"{base}.g{generation}"


def job_message(row: dict[str, Any]) -> jobs_pb2.Job:
    """The Job of an outbox row joined with its subtask."""
    job = jobs_pb2.Job(
        subtask_id=str(row["subtask_id"]),
        task_id=str(row["task_id"]),
        owner_id=row["owner_id"],
        queue=row["queue"],
        attempt=row["attempt"],
        prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        width=row["width"],
        height=row["height"],
        seed=row["seed"],
        use_polish=row["use_polish"],
        format=vocabulary.IMAGE_FORMAT_ENUMS.get(row["output_format"]),  # None: unset
        generation=row["generation"],
        index=row["idx"],
        ratio=row["ratio"],
        reuse_results=row["reuse_results"],
        share_results=row["share_results"],
    )
    job.create_time.FromDatetime(row["create_time"])
    return job


def message_size(payload: bytes, headers: dict[str, str]) -> int:
    """Bytes of a message that the server's max payload limits: headers plus payload."""
    header_bytes = sum(len(k) + len(v) + 4 for k, v in headers.items())
    return len(payload) + (header_bytes + _HEADERS_OVERHEAD if headers else 0)


class Capacity(Protocol):
    """Live worker slots and measured render time of a queue (`estimates.Estimator`)."""

    async def capacity(self, queue: str) -> tuple[int, float]:
        """(worker slots serving `queue` now, seconds per render)."""
        ...


@dataclasses.dataclass(frozen=True)
class WindowRule:
    """How many jobs of a queue may be in flight: see `ranking.window`."""

    lead: float
    unserved: int
    maximum: int
    aging: float


@dataclasses.dataclass
class DispatchStats:
    """Counters for tests and logs."""

    published: int = 0
    rounds: int = 0
    failures: int = 0
    unpublishable: int = 0


@dataclasses.dataclass
class _Prepared:
    """Picked rows split into publishable messages and rows that can never be published."""

    rows: list[dict[str, Any]]
    messages: list[tuple[str, bytes, dict[str, str]]]
    too_large: list[tuple[dict[str, Any], int]]


class Dispatcher:
    """Publishes the outbox until stopped; `wake()` starts a round at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        *,
        capacity: Capacity,
        rule: WindowRule,
        batch: int,
        poll: float,
        max_backoff: float,
        max_payload: Callable[[], int],
        on_outcome: Callable[[fold.Outcome], Awaitable[None]] | None = None,
        queues: tuple[str, ...] = bus.QUEUES,
        crash_after_publish: bool = False,
    ) -> None:
        self._engine = engine
        self._js = js
        self._capacity = capacity
        self._rule = rule
        self._batch = batch
        self._poll = poll
        self._max_payload = max_payload
        self._on_outcome = on_outcome
        self._queues = queues
        # Fault injection for the T5 test only: die after JetStream acknowledged a batch and
        # before the rows are marked sent. No deployment sets TASKS_FAULT_CRASH_AFTER_PUBLISH.
        self._crash_after_publish = crash_after_publish
        self._wake = asyncio.Event()
        self._due: set[str] = set(queues)
        # Queues that had rows left when their round ended: ending jobs free room for them.
        self._held_back: set[str] = set()
        # Per queue: when a failed queue may be tried again, and its failures in a row.
        self._retry_at: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._delays = backoff.Backoff(first=0.05, cap=max_backoff)
        self._deferred: set[str] = set()
        self._unserved: set[str] = set()
        self.stats = DispatchStats()

    def wake(self) -> None:
        """Starts a round over every queue now (after committing outbox rows)."""
        self._due.update(self._queues)
        self._wake.set()

    def room_freed(self) -> None:
        """Jobs ended: starts a round at once for the queues that had rows left, if any."""
        if self._held_back:
            self._due.update(self._held_back)
            self._wake.set()

    def _ready(self) -> list[str]:
        now = time.monotonic()
        return [q for q in self._queues if q in self._due and self._retry_at.get(q, 0.0) <= now]

    async def run(self) -> None:
        """The dispatch loop: a round whenever woken, and over every queue each `poll`
        seconds (rows committed by other replicas, re-publications)."""
        while True:
            self._wake.clear()
            queues = self._ready()
            self._due.difference_update(queues)
            await self.dispatch_once(queues)
            if self._ready():
                continue  # a full batch went out, or jobs ended meanwhile
            now = time.monotonic()
            later = [t for q, t in self._retry_at.items() if q in self._due and t > now]
            timeout = min([self._poll, *(t - now for t in later)])
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            except TimeoutError:
                self._due.update(self._queues)

    async def dispatch_once(self, queues: Iterable[str] | None = None) -> bool:
        """One round over `queues` (default all); a queue's failure is logged and retried
        with that queue's backoff, never stopping the others. True when some queue had more
        to send right away (those queues are then due for the next round)."""
        self.stats.rounds += 1
        busy = False
        for queue in self._queues if queues is None else queues:
            started = time.monotonic()
            try:
                sent, more = await self._dispatch_queue(queue)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(queue, exc)
                continue
            if queue in self._deferred:
                self._deferred.discard(queue)
            else:  # a finished round ends the queue's backoff
                self._retry_at.pop(queue, None)
                self._failures.pop(queue, None)
            elapsed = time.monotonic() - started
            if elapsed > _SLOW_ROUND:
                log.warning(
                    "dispatch_round_slow", queue=queue, seconds=round(elapsed, 3), sent=sent
                )
            if more:
                busy = True
                self._due.add(queue)
            self.stats.published += sent
        return busy

    def _failed(self, queue: str, exc: Exception) -> None:
        self.stats.failures += 1
        failures = self._failures[queue] = self._failures.get(queue, 0) + 1
        delay = self._delays.delay(failures)
        self._retry_at[queue] = time.monotonic() + delay
        self._due.add(queue)
        log.warning(
            "dispatch_failed",
            queue=queue,
            error=type(exc).__name__,
            detail=str(exc)[:200],
            retry_in=delay,
        )

    async def window(self, queue: str) -> int:
        """Jobs of `queue` allowed in flight now."""
        slots, render = await self._capacity.capacity(queue)
        if slots <= 0 and queue not in self._unserved:
            self._unserved.add(queue)
            log.warning("queue_has_no_live_worker", queue=queue, dispatching=self._rule.unserved)
        elif slots > 0:
            self._unserved.discard(queue)
        rule = self._rule
        return ranking.window(
            slots, render, lead=rule.lead, unserved=rule.unserved, maximum=rule.maximum
        )

    async def _dispatch_queue(self, queue: str) -> tuple[int, bool]:
        """One queue's round; returns (jobs published, whether more should go right away)."""
        window = await self.window(queue)
        async with self._engine.begin() as conn:
            if not await conn.scalar(text(_QUEUE_LOCK), {"q": queue}):
                # Another replica is in a round of this queue; its counts may predate the
                # jobs that just ended, so look again shortly.
                self._due.add(queue)
                self._deferred.add(queue)
                self._retry_at[queue] = time.monotonic() + _LOCK_RETRY
                return 0, False
            repub = await self._pick(conn, _PICK_REPUBLISH, queue, self._batch)
            in_flight = int(await conn.scalar(text(_IN_FLIGHT), {"q": queue}) or 0)
            room = min(window - in_flight, self._batch)
            fresh = await self._pick(conn, ranking.PICK, queue, room) if room > 0 else []
            prepared = self._prepare(repub + fresh)
            published = await self._publish(conn, queue, prepared)
        await self._after_round(queue, published, prepared.too_large)
        missing = len(prepared.rows) - len(published)
        if missing:  # what went out is committed; the rest is retried with backoff
            raise ConnectionError(f"{missing} jobs could not be published")
        # Rows may be left behind when the room was used up: jobs ending free room for them.
        if room <= 0 or len(fresh) == room:
            self._held_back.add(queue)
        else:
            self._held_back.discard(queue)
        more = len(repub) == self._batch or (room == self._batch and len(fresh) == room)
        return len(published), more

    async def _pick(
        self, conn: AsyncConnection, sql: str, queue: str, limit: int
    ) -> list[dict[str, Any]]:
        params = {"q": queue, "limit": limit, "aging": self._rule.aging}
        return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]

    def _prepare(self, rows: list[dict[str, Any]]) -> _Prepared:
        limit = self._max_payload()
        prepared = _Prepared([], [], [])
        for row in rows:
            payload = job_message(row).SerializeToString()
            headers = {
                bus.MSG_ID_HEADER: message_id(
                    str(row["subtask_id"]), row["attempt"], row["generation"]
                )
            }
            size = message_size(payload, headers)
            if size > limit:
                prepared.too_large.append((row, size))
                continue
            prepared.rows.append(row)
            prepared.messages.append((bus.jobs_subject(row["queue"]), payload, headers))
        return prepared

    async def _publish(
        self, conn: AsyncConnection, queue: str, prepared: _Prepared
    ) -> list[dict[str, Any]]:
        """Publishes the prepared rows and marks the stored ones sent; returns those."""
        if not prepared.messages:
            return []
        stored = await pull.publish_all(self._js, prepared.messages, ack_within=_PUBLISH_TIMEOUT)
        published = [row for row, ok in zip(prepared.rows, stored, strict=True) if ok]
        if published and self._crash_after_publish:
            log.warning("fault_injected_crash", published=len(published))
            os._exit(70)
        if published:
            await conn.execute(text(_MARK_SENT), {"ids": [int(r["id"]) for r in published]})
        log.debug("jobs_dispatched", queue=queue, count=len(published))
        return published

    async def _after_round(
        self,
        queue: str,
        published: list[dict[str, Any]],
        too_large: list[tuple[dict[str, Any], int]],
    ) -> None:
        """After the round's commit: note when tasks last had a job dispatched (their wait
        for priority aging starts again) and fail the rows that can never be published."""
        fresh_tasks = sorted({str(r["task_id"]) for r in published if r["generation"] == 0})
        if fresh_tasks:
            async with self._engine.begin() as conn:
                await conn.execute(text(_NOTE_DISPATCHED), {"ids": fresh_tasks})
        if too_large:
            async with self._engine.begin() as conn:
                outcome = await self._fail_unpublishable(conn, queue, too_large)
            if self._on_outcome is not None:
                await self._on_outcome(outcome)

    async def _fail_unpublishable(
        self, conn: AsyncConnection, queue: str, rows: list[tuple[dict[str, Any], int]]
    ) -> fold.Outcome:
        """Fails the subtasks whose job exceeds the server's max payload: publishing would
        fail every round, so they end now with a reason instead of blocking the queue."""
        limit = self._max_payload()
        changes = [
            fold.Change(
                str(row["subtask_id"]),
                int(row["attempt"]),
                terminal=lifecycle.FAILED,
                error_type=job_errors.UNPUBLISHABLE,
                error_message=(
                    f"the job is {size} bytes, more than the message bus accepts "
                    f"({limit} bytes); shorten the prompt"
                ),
            )
            for row, size in rows
        ]
        # The fold takes the task rows first, then the subtasks; the outbox rows go last.
        outcome = await fold.apply(conn, changes)
        await conn.execute(text(_DROP_ROWS), {"ids": [int(r["id"]) for r, _ in rows]})
        self.stats.unpublishable += len(rows)
        log.warning(
            "jobs_unpublishable",
            queue=queue,
            count=len(rows),
            subtask_id=str(rows[0][0]["subtask_id"]),
            bytes=rows[0][1],
            limit=limit,
        )
        return outcome
