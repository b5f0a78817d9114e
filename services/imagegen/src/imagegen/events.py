"""Publishing a job's events on `events.subtasks.<task_id>`, deduplicated by JetStream.

An event's id (also its `Nats-Msg-Id`) is derived from the subtask, attempt, generation,
delivery and sequence, so publishing the same event again after a hiccup is dropped by the
stream's duplicate window, while a later delivery of the same attempt gets new ids.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from google.protobuf import duration_pb2
from nats.js import JetStreamContext

from imagegen import retry
from imagegen.jobspec import Delivery
from kiln.common import bus, job_errors, timestamps
from kiln.imagegen.v1 import jobs_pb2

log = structlog.get_logger("imagegen.events")

_PUBLISH_TIMEOUT = 5.0
_PUBLISH_TRIES = 3


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


class JobEvents:
    """The events of one delivery of one job, numbered in order."""

    def __init__(self, js: JetStreamContext, worker_id: str, delivery: Delivery) -> None:
        self._js = js
        self._worker_id = worker_id
        self._delivery = delivery
        self._sequence = 0

    async def _publish(self, event: jobs_pb2.SubtaskEvent, tries: int = _PUBLISH_TRIES) -> None:
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
        data = event.SerializeToString()
        headers = {bus.MSG_ID_HEADER: event.event_id}
        for attempt in range(1, tries + 1):
            try:
                await self._js.publish(
                    bus.events_subject(job.task_id), data, headers=headers, timeout=_PUBLISH_TIMEOUT
                )
            except Exception as error:  # any bus failure means "not published"
                log.warning(
                    "event_publish_failed",
                    event_id=event.event_id,
                    kind=jobs_pb2.SubtaskEventKind.Name(event.kind),
                    try_number=attempt,
                    error=type(error).__name__,
                )
                if attempt < tries:
                    await asyncio.sleep(0.2 * attempt)
            else:
                return
        raise PublishFailed(event.event_id)

    async def started(self) -> None:
        """The job began on this worker."""
        await self._publish(jobs_pb2.SubtaskEvent(kind=jobs_pb2.SUBTASK_EVENT_KIND_STARTED))

    async def progress(self, step: int, total_steps: int) -> None:
        """Rendering advanced; a lost progress event is logged, never fatal."""
        with contextlib.suppress(PublishFailed):
            await self._publish(
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
