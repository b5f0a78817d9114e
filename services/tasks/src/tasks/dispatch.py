"""The dispatcher: outbox rows -> jobs on JetStream, fairly, and safe to crash anywhere.

One round, per queue:
  1. count the queue's jobs in flight (subtasks queued or running) and stop when the window
     is full;
  2. pick up to the free room of unsent outbox rows, highest priority first and then
     round-robin across owners (the n-th oldest row of every owner before the (n+1)-th of
     any), and lock them with FOR UPDATE SKIP LOCKED so other replicas take other rows;
  3. publish each as a `Job` with `Nats-Msg-Id` = `<subtask>.<attempt>[.g<generation>]`;
  4. mark the published rows sent and their subtasks queued, and commit.

Rounds run when rows are committed (`wake`), when jobs end while a queue's window held rows
back (`room_freed`; ending jobs of a queue with nothing waiting cost no query), and over
every queue each poll interval, for rows committed by other replicas.

A crash between 3 and 4 leaves the rows unsent; they are published again with the same
message ids and JetStream's duplicate window drops the copies. When NATS is down, the
publishes fail, nothing is marked, and the dispatcher retries with a capped backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterable
from typing import Any

import structlog
from nats.js import JetStreamContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import bus, pull
from kiln.imagegen.v1 import jobs_pb2
from tasks import convert

log = structlog.get_logger("tasks.dispatch")

_SLOW_ROUND = 2.0
_PUBLISH_TIMEOUT = 5.0

_IN_FLIGHT = (
    "SELECT count(*) FROM tasks.subtasks WHERE queue = :q AND state IN ('queued', 'running')"
)

# Fair order: priority first, then each owner's rank (its 1st row, then every owner's 2nd
# row...), then age. Ranking reads ids only; the rows are locked afterwards.
_PICK = """
WITH ranked AS (
    SELECT id, priority,
        row_number() OVER (PARTITION BY owner_id, priority ORDER BY id) AS rank
    FROM tasks.outbox
    WHERE queue = :q AND sent_time IS NULL AND (generation > 0) = :republish
)
SELECT o.id, o.subtask_id, o.attempt, o.generation, s.task_id, s.owner_id, s.queue, s.idx,
    s.prompt, s.negative_prompt, s.width, s.height, s.seed, s.use_polish, s.output_format,
    s.ratio, s.create_time
FROM tasks.outbox o JOIN tasks.subtasks s ON s.id = o.subtask_id
WHERE o.id IN (
    SELECT id FROM ranked ORDER BY priority DESC, rank, id LIMIT :limit
) AND o.sent_time IS NULL
ORDER BY o.priority DESC, o.id
FOR UPDATE OF o SKIP LOCKED
"""

# Subtask rows are locked in id order, as the fold locks them, so the two never deadlock
# when a job's events are folded before its row is marked sent.
_MARK_SENT = """
WITH sent AS (
    UPDATE tasks.outbox SET sent_time = now() WHERE id = ANY(CAST(:ids AS bigint[]))
    RETURNING subtask_id, attempt
), waiting AS (
    SELECT s.id FROM tasks.subtasks s JOIN sent ON s.id = sent.subtask_id
    WHERE s.attempt = sent.attempt AND s.state = 'pending'
    ORDER BY s.id FOR UPDATE OF s
)
UPDATE tasks.subtasks s SET state = 'queued', queue_time = COALESCE(s.queue_time, now()),
    last_seen = now()
FROM waiting WHERE s.id = waiting.id AND s.state = 'pending'
"""


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
        format=convert.IMAGE_FORMATS.get(row["output_format"], 0),
        generation=row["generation"],
        index=row["idx"],
        ratio=row["ratio"],
    )
    job.create_time.FromDatetime(row["create_time"])
    return job


@dataclasses.dataclass
class DispatchStats:
    """Counters for tests and logs."""

    published: int = 0
    rounds: int = 0
    failures: int = 0


class Dispatcher:
    """Publishes the outbox until stopped; `wake()` starts a round at once."""

    def __init__(
        self,
        engine: AsyncEngine,
        js: JetStreamContext,
        *,
        window: int,
        batch: int,
        poll: float,
        max_backoff: float,
        queues: tuple[str, ...] = bus.QUEUES,
        crash_after_publish: bool = False,
    ) -> None:
        self._engine = engine
        self._js = js
        self._window = window
        self._batch = batch
        self._poll = poll
        self._max_backoff = max_backoff
        self._queues = queues
        # Fault injection for the T5 test only: die after JetStream acknowledged a batch and
        # before the rows are marked sent. No deployment sets TASKS_FAULT_CRASH_AFTER_PUBLISH.
        self._crash_after_publish = crash_after_publish
        self._wake = asyncio.Event()
        self._due: set[str] = set(queues)
        # Queues whose window was full with rows possibly waiting: ending jobs free room.
        self._held_back: set[str] = set()
        self.stats = DispatchStats()

    def wake(self) -> None:
        """Starts a round over every queue now (after committing outbox rows)."""
        self._due.update(self._queues)
        self._wake.set()

    def room_freed(self) -> None:
        """Jobs ended: starts a round for the queues whose window held rows back, if any."""
        if self._held_back:
            self._due.update(self._held_back)
            self._wake.set()

    async def run(self) -> None:
        """The dispatch loop: a round whenever woken, and over every queue each `poll`
        seconds (rows committed by other replicas, re-publications)."""
        backoff = 0.05
        while True:
            self._wake.clear()
            queues = [q for q in self._queues if q in self._due]
            self._due.clear()
            try:
                await self.dispatch_once(queues)
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.failures += 1
                self._due.update(queues)
                log.warning("dispatch_failed", error=type(exc).__name__, retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if self._due:
                continue  # a full batch went out: more rows are likely waiting
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            except TimeoutError:
                self._due.update(self._queues)

    async def dispatch_once(self, queues: Iterable[str] | None = None) -> bool:
        """One round over `queues` (default all); True when some queue had more to send
        right away (those queues are then due for the next round)."""
        self.stats.rounds += 1
        busy = False
        for queue in self._queues if queues is None else queues:
            started = time.monotonic()
            sent, full_batch = await self._dispatch_queue(queue)
            elapsed = time.monotonic() - started
            if elapsed > _SLOW_ROUND:
                log.warning(
                    "dispatch_round_slow", queue=queue, seconds=round(elapsed, 3), sent=sent
                )
            if full_batch:
                busy = True
                self._due.add(queue)
            if sent:
                self.stats.published += sent
        return busy

    async def _dispatch_queue(self, queue: str) -> tuple[int, bool]:
        # Re-publications (generation > 0) are of jobs already counted in flight, so they
        # bypass the window: otherwise lost jobs filling the window would block it forever.
        republished, _ = await self._dispatch_rows(queue, self._batch, republish=True)
        async with self._engine.connect() as conn:
            in_flight = int(await conn.scalar(text(_IN_FLIGHT), {"q": queue}) or 0)
        free = self._window - in_flight
        room = min(free, self._batch)
        if room <= 0:
            self._held_back.add(queue)
            return republished, False
        sent, full = await self._dispatch_rows(queue, room, republish=False)
        # A window-sized pick that filled up may have left rows for when jobs end.
        if full and room == free:
            self._held_back.add(queue)
        else:
            self._held_back.discard(queue)
        return republished + sent, full and room < free

    async def _dispatch_rows(self, queue: str, room: int, *, republish: bool) -> tuple[int, bool]:
        async with self._engine.begin() as conn:
            params = {"q": queue, "limit": room, "republish": republish}
            rows = [dict(r) for r in (await conn.execute(text(_PICK), params)).mappings()]
            if not rows:
                return 0, False
            published = await self._publish(rows)
            if published and self._crash_after_publish:
                log.warning("fault_injected_crash", published=len(published))
                os._exit(70)
            if published:
                await self._mark_sent(conn, published)
        if len(published) < len(rows):
            raise ConnectionError(f"{len(rows) - len(published)} jobs could not be published")
        log.debug("jobs_dispatched", queue=queue, count=len(published))
        return len(published), len(rows) == room

    async def _publish(self, rows: list[dict[str, Any]]) -> list[int]:
        messages = [
            (
                bus.jobs_subject(row["queue"]),
                job_message(row).SerializeToString(),
                {
                    bus.MSG_ID_HEADER: message_id(
                        str(row["subtask_id"]), row["attempt"], row["generation"]
                    )
                },
            )
            for row in rows
        ]
        stored = await pull.publish_all(self._js, messages, ack_within=_PUBLISH_TIMEOUT)
        return [int(row["id"]) for row, ok in zip(rows, stored, strict=True) if ok]

    async def _mark_sent(self, conn: AsyncConnection, ids: list[int]) -> None:
        await conn.execute(text(_MARK_SENT), {"ids": ids})
