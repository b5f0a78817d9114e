"""The event and advisory consumers: JetStream -> fold -> commit -> ack -> announce.

Events are pulled in batches from the durable consumer `tasks-progress` (a message holds one
event or a worker's batch of them) and folded in one transaction per batch (see `fold`);
the messages are acknowledged only after the commit, so a crash or a database outage
redelivers them and the fold's fencing makes the repeat harmless. An event that can never
fold (undecodable, failing `fold.event_problem`, or refused by the database for its own
content) is set aside with an `event_rejected` log line and a count in
`kiln_tasks_events_rejected_total`, and a message with nothing else is terminated; a failing
batch is folded again one event at a time, so one such event never holds back the others
of its batch (or of its message) nor the consumer.

Max-deliveries advisories (a job that reached the consumer's max_deliver, such as one that
kills its workers) are pulled from `tasks-advisories`: the job is read from the JOBS stream
by sequence, its subtask is failed with MAX_DELIVERIES when the attempt still matches, the
message is deleted from the work-queue stream (which otherwise keeps it), and the advisory
is acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable, Sequence

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from kiln.common import bus, job_errors, pull, subtask_events
from kiln.imagegen.v1 import jobs_pb2
from tasks import fold, lifecycle, metrics

log = structlog.get_logger("tasks.progress")

_FETCH_WAIT = 0.5
"""How long one fetch waits for events; also how long `stop()` may take."""

Announce = Callable[[fold.Outcome], Awaitable[None]]


class _PullLoop:
    """Pulls batches from a durable consumer and hands them to `handle` until stopped."""

    stream: str
    consumer: str

    def __init__(self, js: JetStreamContext, batch: int) -> None:
        self._js = js
        self._batch = batch
        self._stopping = False

    def stop(self) -> None:
        """Ends `run()` after the current fetch (at most its half-second wait)."""
        self._stopping = True

    async def handle(self, messages: Sequence[Msg]) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        """Subscribes (retrying while NATS is away) and processes batches forever."""
        subscription = await self._bind()
        try:
            while not self._stopping:
                await self._round(subscription)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _bind(self) -> JetStreamContext.PullSubscription:
        while True:
            try:
                return await self._js.pull_subscribe_bind(durable=self.consumer, stream=self.stream)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "consumer_bind_failed", consumer=self.consumer, error=type(exc).__name__
                )
                await asyncio.sleep(1.0)

    async def _round(self, subscription: JetStreamContext.PullSubscription) -> None:
        try:
            messages = await pull.fetch_ready(subscription, self._batch, _FETCH_WAIT)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("consumer_fetch_failed", consumer=self.consumer, error=type(exc).__name__)
            await asyncio.sleep(0.5)
            return
        if not messages:
            return
        try:
            await self.handle(messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Not acknowledged: JetStream redelivers them after a short delay.
            log.warning("consumer_batch_failed", consumer=self.consumer, error=type(exc).__name__)
            with contextlib.suppress(Exception):
                for message in messages:
                    await message.nak(delay=1.0)
            await asyncio.sleep(0.5)


class ProgressConsumer(_PullLoop):
    """Folds worker events into the database."""

    stream = bus.EVENTS_STREAM
    consumer = bus.PROGRESS_CONSUMER

    def __init__(
        self, js: JetStreamContext, engine: AsyncEngine, batch: int, announce: Announce
    ) -> None:
        super().__init__(js, batch)
        self._engine = engine
        self._announce = announce
        self.folded = 0

    async def handle(self, messages: Sequence[Msg]) -> None:
        """Folds the events of a batch of messages in one transaction, then acknowledges
        the messages.

        A message carries one event or a worker's batch of them (`subtask_events`); each
        event is judged on its own. Events that can never fold are set aside (logged and
        counted) first, and a message none of whose events can fold is terminated. If the
        fold still fails, the events are folded one by one, so only the one that breaks
        the fold is rejected and the rest of its batch goes on.
        """
        batch: list[_Delivered] = []
        for message in messages:
            try:
                events = subtask_events.decode(message.data, message.headers)
            except subtask_events.Undecodable:
                await self._reject(message, "undecodable", "not a SubtaskEvent")
                continue
            foldable = []
            for event in events:
                problem = fold.event_problem(event)
                if problem is None:
                    foldable.append(event)
                else:
                    self._set_aside(message, "invalid", problem, event)
            if foldable:
                batch.append(_Delivered(message, foldable))
            else:
                await message.term()
        if not batch:
            return
        try:
            await self._fold_and_ack(batch)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if len(batch) == 1 and len(batch[0].events) == 1 and not _blames_event(exc):
                raise  # the database, not the event: redelivered after a pause
            log.warning(
                "event_batch_failed",
                events=sum(len(d.events) for d in batch),
                error=type(exc).__name__,
            )
            await self._fold_one_by_one(batch)

    async def _fold_and_ack(self, batch: Sequence[_Delivered]) -> None:
        async with self._engine.begin() as conn:
            outcome = await fold.apply(
                conn, fold.collapse(event for delivered in batch for event in delivered.events)
            )
        # Watchers hear of the commit before the acks go out: the acks only stop redelivery.
        await self._announce(outcome)
        for delivered in batch:
            await delivered.message.ack()
        self.folded += sum(len(d.events) for d in batch)

    async def _fold_one_by_one(self, batch: Sequence[_Delivered]) -> None:
        for position, delivered in enumerate(batch):
            message, rejected = delivered.message, 0
            for event in delivered.events:
                try:
                    async with self._engine.begin() as conn:
                        outcome = await fold.apply(conn, fold.collapse([event]))
                    await self._announce(outcome)
                    self.folded += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not _blames_event(exc):
                        # The database is failing: everything left comes back after a pause
                        # (what of this message was folded already folds again, harmlessly).
                        log.warning("event_fold_failed", error=type(exc).__name__)
                        await _hand_back([rest.message for rest in batch[position:]])
                        return
                    self._set_aside(message, "unfoldable", type(exc).__name__, event)
                    rejected += 1
            if rejected == len(delivered.events):
                await message.term()
            else:
                await message.ack()

    async def _reject(
        self,
        message: Msg,
        reason: str,
        problem: str,
        event: jobs_pb2.SubtaskEvent | None = None,
    ) -> None:
        """Terminates a message that can never fold, with a log line and a count."""
        self._set_aside(message, reason, problem, event)
        await message.term()

    def _set_aside(
        self,
        message: Msg,
        reason: str,
        problem: str,
        event: jobs_pb2.SubtaskEvent | None = None,
    ) -> None:
        """Logs and counts an event that can never fold; its message is settled later."""
        metrics.EVENTS_REJECTED.labels(reason=reason).inc()
        log.warning(
            "event_rejected",
            reason=reason,
            problem=problem,
            subject=message.subject,
            # Caller-made text goes into the log cut short.
            subtask_id=event.subtask_id[:64] if event is not None else None,
            attempt=event.attempt if event is not None else None,
        )


@dataclasses.dataclass(frozen=True)
class _Delivered:
    """One message of a batch and those of its events that may fold."""

    message: Msg
    events: list[jobs_pb2.SubtaskEvent]


def _blames_event(exc: Exception) -> bool:
    """Whether `exc` says the event itself cannot be stored (so retrying cannot help),
    rather than the database being away, busy or deadlocked (which a retry outlives)."""
    return isinstance(
        exc,
        sa_exc.DataError | sa_exc.IntegrityError | ValueError | TypeError | OverflowError,
    )


class AdvisoryConsumer(_PullLoop):
    """Fails the subtasks of jobs that exhausted their deliveries."""

    stream = bus.ADVISORIES_STREAM
    consumer = bus.ADVISORIES_CONSUMER

    def __init__(
        self,
        js: JetStreamContext,
        engine: AsyncEngine,
        announce: Announce,
        max_deliver: int,
    ) -> None:
        super().__init__(js, 50)
        self._engine = engine
        self._announce = announce
        self._max_deliver = max_deliver

    async def handle(self, messages: Sequence[Msg]) -> None:
        """Handles each advisory on its own; one whose job can never fold is terminated
        (logged and counted) and the others go on."""
        for position, message in enumerate(messages):
            try:
                await self._handle_one(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not _blames_event(exc):
                    # The database is failing: the rest comes back after a pause.
                    log.warning("advisory_failed", error=type(exc).__name__)
                    await _hand_back(messages[position:])
                    return
                metrics.EVENTS_REJECTED.labels(reason="advisory").inc()
                log.warning("advisory_rejected", problem=type(exc).__name__)
                await message.term()

    async def _handle_one(self, message: Msg) -> None:
        try:
            advisory = json.loads(message.data)
            sequence = int(advisory["stream_seq"])
        except (ValueError, KeyError, TypeError):
            log.warning("advisory_undecodable", subject=message.subject)
            await message.term()
            return
        job = await self._read_job(sequence)
        if job is None:
            # Gone already, or not a job we can read: make sure the stream drops it.
            with contextlib.suppress(js_errors.NotFoundError):
                await self._js.delete_msg(bus.JOBS_STREAM, sequence)
        else:
            deliveries = advisory.get("deliveries", self._max_deliver)
            change = fold.Change(
                job.subtask_id,
                job.attempt,
                terminal=lifecycle.FAILED,
                error_type=job_errors.MAX_DELIVERIES,
                error_message=(
                    f"the job was delivered {deliveries} times without finishing "
                    "(the worker crashed, timed out or kept failing); it will not be retried"
                ),
            )
            async with self._engine.begin() as conn:
                outcome = await fold.apply(conn, [change])
            metrics.MAX_DELIVERIES.inc()
            log.info(
                "job_max_deliveries",
                subtask_id=job.subtask_id,
                attempt=job.attempt,
                stream_seq=sequence,
                failed=bool(outcome.versions),
            )
            with contextlib.suppress(js_errors.NotFoundError):
                await self._js.delete_msg(bus.JOBS_STREAM, sequence)
            await self._announce(outcome)
        await message.ack()

    async def _read_job(self, sequence: int) -> jobs_pb2.Job | None:
        try:
            raw = await self._js.get_msg(bus.JOBS_STREAM, sequence)
        except js_errors.NotFoundError:
            return None  # already removed (handled before, or acknowledged at last)
        job = jobs_pb2.Job()
        try:
            job.ParseFromString(raw.data or b"")
        except Exception:
            log.warning("job_undecodable", stream_seq=sequence)
            return None
        problem = fold.subtask_id_problem(job.subtask_id)
        if problem is not None or job.attempt < 1:
            # Not one of ours: there is no subtask to fail, only the message to drop.
            metrics.EVENTS_REJECTED.labels(reason="advisory").inc()
            log.warning("advisory_rejected", stream_seq=sequence, problem=problem or "attempt")
            return None
        return job


async def _hand_back(messages: Sequence[Msg]) -> None:
    """While the database fails: every message left comes back after a second, and this
    consumer pauses before its next fetch."""
    for message in messages:
        with contextlib.suppress(Exception):
            await message.nak(delay=1.0)
    await asyncio.sleep(0.5)
