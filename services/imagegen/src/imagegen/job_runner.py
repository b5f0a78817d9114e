"""One delivery of one job, from its bytes to ack, nak or term.

Order of effects, each safe to repeat: STARTED event -> render -> store (fixed names, so a
repeat overwrites) -> result event -> ack/term. A job is settled only after JetStream
acknowledged its result event; an event that cannot be published leaves the job to come
back (`nak` with a delay). While it renders, the job is kept alive with `in_progress` and
watched for its task's cancellation; a job whose lease was lost (the process was frozen
past ack_wait, so another worker may own it) stores and reports nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import hashlib
import time
from collections.abc import Awaitable
from typing import Any

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from imagegen import events, faults, imaging, jobspec, metrics, pipeline, providers, retry, reuse
from imagegen.controls import Controls
from imagegen.heartbeat import WorkerStats
from imagegen.store import ImageStore, StoreFailed
from kiln.common import job_errors
from kiln.imagegen.v1 import jobs_pb2

log = structlog.get_logger("imagegen.job")

_IN_PROGRESS = b"+WPI"


@dataclasses.dataclass(frozen=True)
class RunnerSettings:
    """The limits a runner applies (see config.ImagegenConfig for their meaning)."""

    ack_wait: float
    max_deliver: int
    time_limit: float
    age_limit: float
    paused_delay: float
    publish_retry_delay: float
    check_interval: float
    progress_interval: float
    crash_marker: str = ""


class LeaseLost(Exception):
    """The job went unheartbeated past ack_wait: JetStream may have given it to another worker."""


class Lease:
    """Keeps a delivery alive with `in_progress` and notices when it may have lapsed.

    Renewals are confirmed (`+WPI` sent as a request, which JetStream answers): a renewal
    that only sat in the client's buffer during a disconnect does not count, so a worker cut
    off from NATS past ack_wait knows the job may be running elsewhere.
    """

    def __init__(self, nc: Client, msg: Msg, ack_wait: float) -> None:
        self._nc = nc
        self._msg = msg
        self._ack_wait = ack_wait
        self._renewed = time.monotonic()

    async def renew_if_due(self) -> None:
        """Renews when a third of ack_wait has passed since the last confirmed renewal."""
        if time.monotonic() - self._renewed < self._ack_wait / 3:
            return
        self.check()
        asked = time.monotonic()
        try:
            await self._nc.request(self._msg.reply, _IN_PROGRESS, timeout=self._ack_wait / 6)
        except Exception as error:  # the next tick tries again
            log.warning("job_heartbeat_failed", error=type(error).__name__)
        else:
            self._renewed = asked

    def check(self) -> None:
        """Raises LeaseLost when the last renewal is older than ack_wait."""
        if time.monotonic() - self._renewed > self._ack_wait:
            raise LeaseLost


class ActiveJob:
    """A running delivery, which the worker can hand back on shutdown."""

    def __init__(self) -> None:
        self.handed_back = False
        self.work: asyncio.Task[jobs_pb2.JobResult] | None = None

    def hand_back(self) -> None:
        """Stops the job's work; the runner then puts the job back for another worker."""
        self.handed_back = True
        if self.work is not None:
            self.work.cancel()


@dataclasses.dataclass(frozen=True)
class _Context:
    """One delivery being run."""

    msg: Msg
    queue: str
    delivery: jobspec.Delivery
    events: events.JobEvents
    active: ActiveJob
    lease: Lease
    log: Any


class JobRunner:
    """Runs deliveries; one instance serves every job of a worker process."""

    def __init__(
        self,
        *,
        nc: Client,
        worker_id: str,
        settings: RunnerSettings,
        pipeline: pipeline.Pipeline,
        store: ImageStore,
        controls: Controls,
        backoff: retry.Backoff,
        stats: WorkerStats,
        index: reuse.ResultIndex | None = None,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self._worker_id = worker_id
        self._settings = settings
        self._pipeline = pipeline
        self._store = store
        self._controls = controls
        self._backoff = backoff
        self._stats = stats
        self._index = index

    async def run(self, msg: Msg, queue: str, active: ActiveJob) -> None:
        """Handles one delivery of a job fetched from `queue`; never raises."""
        # JetStream's ack timer runs from the delivery, so the lease does too.
        lease = Lease(self._nc, msg, self._settings.ack_wait)
        delivery_number = msg.metadata.num_delivered or 1
        try:
            job = jobspec.decode(msg.data)
        except jobspec.MalformedJob as malformed:
            await self._malformed(msg, queue, malformed, delivery_number)
            return
        delivery = jobspec.Delivery(job, delivery_number, self._settings.max_deliver)
        context = _Context(
            msg=msg,
            queue=queue,
            delivery=delivery,
            events=events.JobEvents(self._js, self._worker_id, delivery),
            active=active,
            lease=lease,
            log=log.bind(
                task_id=job.task_id,
                subtask_id=job.subtask_id,
                attempt=job.attempt,
                delivery=delivery_number,
                queue=queue,
            ),
        )
        try:
            await self._run(context)
        except LeaseLost:
            context.log.warning("job_lease_lost")
            metrics.job_done(queue, "lease_lost")
        except events.PublishFailed:
            context.log.warning("job_put_back_unreported", delay=self._settings.publish_retry_delay)
            await _settle(msg.nak(delay=self._settings.publish_retry_delay), "nak")
        except Exception:
            context.log.exception("job_runner_failed")
            await _settle(msg.nak(delay=self._settings.publish_retry_delay), "nak")

    async def _run(self, context: _Context) -> None:
        job = context.delivery.job
        age = jobspec.age_seconds(job, datetime.datetime.now(datetime.UTC))
        if age is not None and age > self._settings.age_limit:
            context.log.info("job_expired", age=round(age, 1))
            await self._fail(context, retry.expired(age, self._settings.age_limit))
            return
        if self._controls.is_cancelled(job.task_id):
            await self._cancelled(context)
            return
        if self._controls.is_paused(context.queue) and not context.delivery.is_last:
            context.log.info("job_put_back_paused", delay=self._settings.paused_delay)
            await _settle(context.msg.nak(delay=self._settings.paused_delay), "nak")
            metrics.job_done(context.queue, "paused")
            return
        lease = context.lease
        lease.check()
        await context.events.started()
        context.log.info("job_started")
        if age is not None:
            metrics.QUEUE_WAIT_SECONDS.labels(queue=context.queue).observe(max(0.0, age))
        work = asyncio.create_task(self._produce(context, lease))
        context.active.work = work
        cancelled = await self._watch(work, job, lease, context.active)
        if context.active.handed_back and (work.cancelled() or work.exception() is not None):
            context.log.info("job_handed_back")
            await _settle(context.msg.nak(), "nak")
            metrics.job_done(context.queue, "handed_back")
        elif cancelled:
            await self._cancelled(context)
        else:
            await self._finish(context, work, lease)

    async def _watch(
        self,
        work: asyncio.Task[jobs_pb2.JobResult],
        job: jobs_pb2.Job,
        lease: Lease,
        active: ActiveJob,
    ) -> bool:
        """Heartbeats until `work` ends; True when the task's cancellation stopped it."""
        cancelled = False
        while not work.done():
            await asyncio.wait({work}, timeout=self._settings.check_interval)
            if work.done():
                break
            if not active.handed_back and self._controls.is_cancelled(job.task_id):
                cancelled = True
                work.cancel()
                continue
            try:
                await lease.renew_if_due()
            except LeaseLost:
                work.cancel()
        return cancelled

    async def _finish(
        self, context: _Context, work: asyncio.Task[jobs_pb2.JobResult], lease: Lease
    ) -> None:
        try:
            lease.check()
            result = work.result()
        except (LeaseLost, asyncio.CancelledError):
            context.log.warning("job_lease_lost")
            metrics.job_done(context.queue, "lease_lost")
            return
        except Exception as error:
            await self._fail(context, self._classify(error, context))
            return
        await context.events.succeeded(result)
        await _settle(context.msg.ack_sync(), "ack")
        self._stats.processed += 1
        metrics.job_done(context.queue, "succeeded")
        if result.reused_from_subtask_id:
            metrics.RESULTS_REUSED.labels(queue=context.queue).inc()
        else:
            metrics.RENDER_SECONDS.labels(queue=context.queue).observe(
                result.render_duration.ToNanoseconds() / 1e9
            )
        latency = jobspec.age_seconds(context.delivery.job, datetime.datetime.now(datetime.UTC))
        if latency is not None:
            metrics.JOB_LATENCY_SECONDS.labels(queue=context.queue).observe(max(0.0, latency))
        context.log.info(
            "job_succeeded",
            object_name=result.object_name,
            size_bytes=result.size_bytes,
            render_ms=result.render_duration.ToMilliseconds(),
            reused_from=result.reused_from_subtask_id or None,
        )

    def _classify(self, error: Exception, context: _Context) -> retry.Failure:
        if isinstance(error, providers.RenderError):
            return retry.from_render_error(error)
        if isinstance(error, StoreFailed):
            context.log.warning("job_store_failed", exc_info=error)
            return retry.storage_unavailable()
        if isinstance(error, TimeoutError):
            return retry.time_limit(self._settings.time_limit)
        context.log.error("job_crashed", exc_info=error)
        return retry.worker_error()

    async def _produce(self, context: _Context, lease: Lease) -> jobs_pb2.JobResult:
        """Polish, then copy a reusable stored image or render, encode and store, under the
        time limit."""
        job = context.delivery.job
        faults.crash_if_marked(self._settings.crash_marker, job.prompt)
        progress = _Throttled(context.events, self._settings.progress_interval, lease)
        request = providers.RenderRequest(
            prompt=job.prompt,
            width=job.width,
            height=job.height,
            seed=job.seed,
            negative_prompt=job.negative_prompt,
        )
        async with asyncio.timeout(self._settings.time_limit):
            prepared = await self._pipeline.prepare(request, use_polish=job.use_polish)
            key = self._render_key(job, context.queue, prepared)
            if key is not None and job.reuse_results:
                found = await self._index.find(job, context.queue, key) if self._index else None
                if found is not None:
                    return await self._copy(context, lease, prepared, found, key)
            rendered = await self._pipeline.render_prepared(
                context.queue, prepared, progress=progress
            )
            provenance = imaging.Provenance(
                prompt=rendered.prompt,
                seed=job.seed,
                model=rendered.model,
                ratio=job.ratio,
                negative_prompt=job.negative_prompt,
            )
            encoded = await pipeline.encode(rendered, jobspec.image_format(job), provenance)
            lease.check()  # never overwrite the image of a delivery we may no longer own
            started = time.perf_counter()
            await asyncio.gather(
                self._store.put(jobspec.object_name(job), encoded.image),
                self._store.put(jobspec.thumbnail_name(job), encoded.thumbnail),
            )
            stored = time.perf_counter() - started + encoded.seconds
            await self._record(job, key, encoded.image.width, encoded.image.height)
        return jobs_pb2.JobResult(
            object_name=jobspec.object_name(job),
            thumbnail_object_name=jobspec.thumbnail_name(job),
            content_type=encoded.image.content_type,
            size_bytes=encoded.image.size,
            sha256=encoded.image.sha256,
            width=encoded.image.width,
            height=encoded.image.height,
            polished_prompt=rendered.polished_prompt,
            polish_duration=events.duration(rendered.polish_seconds),
            render_duration=events.duration(rendered.render_seconds),
            store_duration=events.duration(stored),
            model=rendered.model,
        )

    def _render_key(self, job: jobs_pb2.Job, queue: str, prepared: pipeline.Prepared) -> str | None:
        """The job's render key when its task reuses or shares results (and has an owner to
        scope them by); None when the index plays no part."""
        if self._index is None or not job.owner_id:
            return None
        if not (job.reuse_results or job.share_results):
            return None
        return self._index.render_key(job, queue, prepared.request.prompt)

    async def _record(self, job: jobs_pb2.Job, key: str | None, width: int, height: int) -> None:
        if key is None or self._index is None:
            return
        entry = reuse.StoredImage(
            subtask_id=job.subtask_id,
            object_name=jobspec.object_name(job),
            thumbnail_object_name=jobspec.thumbnail_name(job),
            width=width,
            height=height,
        )
        await self._index.record(job, key, entry)

    async def _copy(
        self,
        context: _Context,
        lease: Lease,
        prepared: pipeline.Prepared,
        found: reuse.Found,
        key: str,
    ) -> jobs_pb2.JobResult:
        """Stores a copy of a reusable image under the job's own names (see `reuse`)."""
        job = context.delivery.job
        content_type = jobspec.image_format(job).content_type
        lease.check()  # never overwrite the image of a delivery we may no longer own
        started = time.perf_counter()
        await asyncio.gather(
            self._store.put_bytes(jobspec.object_name(job), found.image, content_type),
            self._store.put_bytes(
                jobspec.thumbnail_name(job), found.thumbnail, imaging.ImageFormat.WEBP.content_type
            ),
        )
        stored = time.perf_counter() - started
        # The copy becomes the entry: it outlives the source by the time between the two.
        await self._record(job, key, found.source.width, found.source.height)
        return jobs_pb2.JobResult(
            object_name=jobspec.object_name(job),
            thumbnail_object_name=jobspec.thumbnail_name(job),
            content_type=content_type,
            size_bytes=len(found.image),
            sha256=hashlib.sha256(found.image).hexdigest(),
            width=found.source.width,
            height=found.source.height,
            polished_prompt=prepared.polished_prompt,
            polish_duration=events.duration(prepared.polish_seconds),
            store_duration=events.duration(stored),
            model=self._pipeline.providers[context.queue].model,
            reused_from_subtask_id=found.source.subtask_id,
        )

    async def _fail(self, context: _Context, failure: retry.Failure) -> None:
        delivery, msg = context.delivery, context.msg
        will_retry = failure.retryable and not delivery.is_last
        await context.events.failed(failure, will_retry=will_retry)
        self._stats.failed += 1
        self._stats.processed += 1
        outcome = "retry" if will_retry else "failed"
        metrics.job_done(
            context.queue, "expired" if failure.type == job_errors.EXPIRED else outcome
        )
        if will_retry:
            delay = self._backoff.delay(delivery.delivery, failure.retry_after)
            context.log.info(
                "job_failed_will_retry", error_type=failure.type, delay=round(delay, 2)
            )
            await _settle(msg.nak(delay=delay), "nak")
        else:
            context.log.info("job_failed", error_type=failure.type)
            await _settle(msg.term(), "term")

    async def _cancelled(self, context: _Context) -> None:
        await context.events.cancelled()
        await _settle(context.msg.ack_sync(), "ack")
        self._stats.processed += 1
        metrics.job_done(context.queue, "cancelled")
        context.log.info("job_cancelled")

    async def _malformed(
        self, msg: Msg, queue: str, malformed: jobspec.MalformedJob, delivery: int
    ) -> None:
        log.error(
            "job_malformed",
            stream_sequence=msg.metadata.sequence.stream,
            reason=malformed.reason,
            task_id=malformed.job.task_id if malformed.job else None,
            subtask_id=malformed.job.subtask_id if malformed.job else None,
        )
        if malformed.job is not None:
            job_events = events.JobEvents(
                self._js,
                self._worker_id,
                jobspec.Delivery(malformed.job, delivery, self._settings.max_deliver),
            )
            failure = retry.Failure(job_errors.MALFORMED_JOB, malformed.reason, retryable=False)
            try:
                await job_events.failed(failure, will_retry=False)
            except events.PublishFailed:
                await _settle(msg.nak(delay=self._settings.publish_retry_delay), "nak")
                return
        self._stats.failed += 1
        self._stats.processed += 1
        metrics.job_done(queue, "malformed")
        await _settle(msg.term(), "term")


class _Throttled:
    """A progress callback publishing at most one event per `interval`.

    The first comes `interval` after the start, not at once: a job that renders faster than
    that reports only its start and its end (one publish fewer per job for fast providers).
    It also checks the lease: a worker resumed after a freeze stops its render at the next
    step instead of reporting progress on a job another worker now owns.
    """

    def __init__(self, job_events: events.JobEvents, interval: float, lease: Lease) -> None:
        self._events = job_events
        self._interval = interval
        self._lease = lease
        self._last = time.monotonic()

    async def __call__(self, step: int, total: int) -> None:
        self._lease.check()
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            await self._events.progress(step, total)


async def _settle(action: Awaitable[object], what: str) -> None:
    """Acks, naks or terms; a failure only means JetStream redelivers the job later."""
    try:
        await action
    except Exception as error:  # redelivery after ack_wait covers it
        log.warning("job_settle_failed", action=what, error=type(error).__name__)
