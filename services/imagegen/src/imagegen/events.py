"""Publishing jobs' events on `events.subtasks.<task_id>`, many per message, deduplicated.

Every job of a worker process hands its events to one `EventPublisher`, which sends them
in batches: the events waiting when a flush starts go out as one message per task (a
SubtaskEventBatch, `kiln.common.subtask_events`), so a worker running many jobs costs the
bus about one message per task per flush instead of one per event. A flush starts as soon
as an event waits and fewer than `max_in_flight` flushes are unanswered; while another
flush is still unanswered it first lingers a few milliseconds so that the events of other
jobs join. An idle publisher sends at once (a worker rendering for seconds pays no linger),
and the busier the worker, the bigger the batches. A job still learns whether *its* event
was stored: `JobEvents` awaits the acknowledgement of the message that carried it, so a
job is settled only after its result event is in the stream, as before.

An event's id is derived from the subtask, attempt, generation, delivery and sequence; a
message's `Nats-Msg-Id` is that id for a lone event and the worker's id with a counter for a
batch, and a retried publish repeats the same message, so JetStream's duplicate window drops
a repeat after a hiccup. The fold is idempotent besides (fenced by attempt, delivery and
sequence), so a batch folded twice changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools

import structlog
from google.protobuf import duration_pb2
from nats.js import JetStreamContext

from imagegen import retry
from imagegen.jobspec import Delivery
from kiln.common import bus, job_errors, pull, subtask_events, timestamps
from kiln.imagegen.v1 import jobs_pb2

log = structlog.get_logger("imagegen.events")

_PUBLISH_TIMEOUT = 5.0
_PUBLISH_TRIES = 3
_MAX_BATCH_BYTES = 256 * 1024
"""A batch message stays well under NATS's default 1 MiB payload limit; an event bigger
than this alone still travels alone, as it always did."""


class PublishFailed(Exception):
    """JetStream did not acknowledge an event: the job must not be acknowledged either."""


def event_id(job: jobs_pb2.Job, delivery: int, sequence: int) -> str:
    """The deterministic id of one event of one delivery."""
    return f"{job.subtask_id}.{job.attempt}.g{job.generation}.d{delivery}.{sequence}"


def duration(seconds: float) -> duration_pb2.Duration:
    """A protobuf Duration."""
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


@dataclasses.dataclass
class _Pending:
    """One event waiting for a flush, and who waits for its acknowledgement."""

    event: jobs_pb2.SubtaskEvent
    size: int
    tries: int
    done: asyncio.Future[None]


class EventPublisher:
    """Sends the events of every job of one worker process, batched per task."""

    def __init__(
        self,
        js: JetStreamContext,
        worker_id: str,
        *,
        max_events: int = 256,
        linger: float = 0.002,
        max_in_flight: int = 4,
    ) -> None:
        self._js = js
        self._worker_id = worker_id
        self._max_events = max_events
        self._linger = linger
        self._slots = asyncio.Semaphore(max_in_flight)
        self._waiting: list[_Pending] = []
        self._ready = asyncio.Event()
        self._counter = itertools.count(1)
        self._flushes: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts flushing in the background."""
        self._loop_task = asyncio.create_task(self._flush_loop(), name="event-flush")

    async def stop(self, within: float = 10.0) -> None:
        """Sends what waits (for at most `within` seconds), then stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while self._waiting or self._flushes:
                    if self._waiting:
                        self._ready.set()
                    await asyncio.sleep(self._linger or 0.001)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for pending in self._waiting:
            if not pending.done.done():
                pending.done.set_exception(PublishFailed(pending.event.event_id))
        self._waiting.clear()

    def submit(
        self, event: jobs_pb2.SubtaskEvent, tries: int = _PUBLISH_TRIES
    ) -> asyncio.Future[None]:
        """Queues `event`; the future ends when JetStream stored it, or fails with
        PublishFailed after `tries` unacknowledged publishes of its message."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)
        self._waiting.append(_Pending(event, event.ByteSize(), tries, done))
        self._ready.set()
        return done

    async def _flush_loop(self) -> None:
        while True:
            await self._ready.wait()
            if self._linger and self._flushes:
                # Busy: let other jobs' events join this flush. Idle: send at once, so a
                # worker with few slots and long renders pays no linger per event.
                await asyncio.sleep(self._linger)
            await self._slots.acquire()
            taken, self._waiting = self._waiting, []
            self._ready.clear()
            if not taken:
                self._slots.release()
                continue
            flush = asyncio.create_task(self._flush(taken))
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)

    async def _flush(self, taken: list[_Pending]) -> None:
        try:
            await self._send([self._message(group) for group in self._groups(taken)])
        except Exception:  # never leave a job waiting on an event nobody will send
            log.exception("event_flush_failed", events=len(taken))
        finally:
            for pending in taken:
                if not pending.done.done():
                    pending.done.set_exception(PublishFailed(pending.event.event_id))
            self._slots.release()

    def _groups(self, taken: list[_Pending]) -> list[list[_Pending]]:
        """The messages of one flush: per task, at most `max_events` events and about
        `_MAX_BATCH_BYTES` each (a bigger event alone), in the order they came."""
        by_task: dict[str, list[list[_Pending]]] = {}
        sizes: dict[str, int] = {}
        for pending in taken:
            task_id = pending.event.task_id
            groups = by_task.setdefault(task_id, [[]])
            if groups[-1] and (
                len(groups[-1]) >= self._max_events
                or sizes[task_id] + pending.size > _MAX_BATCH_BYTES
            ):
                groups.append([])
                sizes[task_id] = 0
            groups[-1].append(pending)
            sizes[task_id] = sizes.get(task_id, 0) + pending.size
        return [group for groups in by_task.values() for group in groups]

    def _message(self, group: list[_Pending]) -> _Message:
        events = [p.event for p in group]
        data, headers = subtask_events.encode(events)
        message_id = (
            events[0].event_id if len(events) == 1 else f"{self._worker_id}.b{next(self._counter)}"
        )
        headers[bus.MSG_ID_HEADER] = message_id
        return _Message(bus.events_subject(events[0].task_id), data, headers, group)

    async def _send(self, messages: list[_Message]) -> None:
        """Publishes the messages together, retrying the unacknowledged ones unchanged (same
        id); settles their events' futures."""
        attempt = 0
        while messages:
            attempt += 1
            stored = await pull.publish_all(
                self._js, [(m.subject, m.data, m.headers) for m in messages], _PUBLISH_TIMEOUT
            )
            failed = []
            for message, ok in zip(messages, stored, strict=True):
                if ok:
                    message.settle(None)
                    continue
                log.warning(
                    "event_publish_failed",
                    message_id=message.headers[bus.MSG_ID_HEADER],
                    events=len(message.events),
                    try_number=attempt,
                )
                # An event allowed fewer tries (progress) gives up without holding others.
                message.give_up(attempt)
                if message.pending:
                    failed.append(message)
            messages = failed
            if messages:
                await asyncio.sleep(0.2 * attempt)


@dataclasses.dataclass
class _Message:
    """One message of a flush and the events it carries."""

    subject: str
    data: bytes
    headers: dict[str, str]
    events: list[_Pending]

    @property
    def pending(self) -> bool:
        """Whether any of its events still waits for this message."""
        return any(not p.done.done() for p in self.events)

    def settle(self, _: None) -> None:
        """JetStream stored the message."""
        for pending in self.events:
            if not pending.done.done():
                pending.done.set_result(None)

    def give_up(self, attempt: int) -> None:
        """After `attempt` unacknowledged publishes: fails the events allowed no more."""
        for pending in self.events:
            if pending.tries <= attempt and not pending.done.done():
                pending.done.set_exception(PublishFailed(pending.event.event_id))


def _retrieved(done: asyncio.Future[None]) -> None:
    """Marks a failure as seen: a STARTED event's, or one whose job stopped waiting (no
    "exception was never retrieved" noise); whoever awaits the future still gets it."""
    if not done.cancelled():
        done.exception()


class JobEvents:
    """The events of one delivery of one job, numbered in order."""

    def __init__(self, publisher: EventPublisher, worker_id: str, delivery: Delivery) -> None:
        self._publisher = publisher
        self._worker_id = worker_id
        self._delivery = delivery
        self._sequence = 0

    def _submit(
        self, event: jobs_pb2.SubtaskEvent, tries: int = _PUBLISH_TRIES
    ) -> asyncio.Future[None]:
        job = self._delivery.job
        self._sequence += 1
        event.event_id = event_id(job, self._delivery.delivery, self._sequence)
        event.subtask_id = job.subtask_id
        event.task_id = job.task_id
        event.attempt = job.attempt
        event.delivery = self._delivery.delivery
        event.sequence = self._sequence
        event.worker_id = self._worker_id
        event.time.CopyFrom(timestamps.now())
        return self._publisher.submit(event, tries)

    async def _publish(self, event: jobs_pb2.SubtaskEvent) -> None:
        await self._submit(event)

    async def started(self) -> None:
        """The job began on this worker: stored before rendering starts, so even a job
        that kills its worker leaves a trace of each delivery."""
        await self._publish(jobs_pb2.SubtaskEvent(kind=jobs_pb2.SUBTASK_EVENT_KIND_STARTED))

    async def progress(self, step: int, total_steps: int) -> None:
        """Rendering advanced; a lost progress event is logged, never fatal."""
        with contextlib.suppress(PublishFailed):
            await self._submit(
                jobs_pb2.SubtaskEvent(
                    kind=jobs_pb2.SUBTASK_EVENT_KIND_PROGRESS, step=step, total_steps=total_steps
                ),
                tries=1,
            )

    async def succeeded(self, result: jobs_pb2.JobResult) -> None:
        """The image is stored."""
        await self._publish(
            jobs_pb2.SubtaskEvent(kind=jobs_pb2.SUBTASK_EVENT_KIND_SUCCEEDED, result=result)
        )

    async def failed(self, failure: retry.Failure, *, will_retry: bool) -> None:
        """The attempt failed; `will_retry` says whether the job comes back."""
        await self._publish(
            jobs_pb2.SubtaskEvent(
                kind=jobs_pb2.SUBTASK_EVENT_KIND_FAILED,
                error=jobs_pb2.JobError(
                    type=failure.type, message=failure.message, retryable=failure.retryable
                ),
                will_retry=will_retry,
            )
        )

    async def cancelled(self) -> None:
        """The job was dropped because its task is cancelled."""
        await self._publish(
            jobs_pb2.SubtaskEvent(
                kind=jobs_pb2.SUBTASK_EVENT_KIND_CANCELLED,
                error=jobs_pb2.JobError(
                    type=job_errors.CANCELLED, message="the task was cancelled", retryable=False
                ),
            )
        )
