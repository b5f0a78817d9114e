"""The worker loop: fetch jobs into free slots, highest-priority queue first.

Prefetch is bounded by free slots: the worker asks for at most as many jobs as it can
start now, so other workers get the rest and a shutdown hands back little. Every time a
slot frees, queues are tried again in priority order; an idle worker waits on one queue at
a time for `fetch_wait`, rotating, so a new job on any queue starts within about
`fetch_wait * (queues - 1)`. Paused queues are not fetched. When jobs are short, slots free
one at a time; a worker with many slots gathers them for a few milliseconds (up to a quarter
of its slots) so one fetch brings several jobs instead of one fetch per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from imagegen import metrics
from imagegen.controls import Controls
from imagegen.heartbeat import WorkerStats
from imagegen.job_runner import ActiveJob, JobRunner
from kiln.common import bus, pull

log = structlog.get_logger("imagegen.worker")

_PROBE_WAIT = 0.05
_ERROR_PAUSE = 0.5
_GATHER_WAIT = 0.005
"""Longest wait for more slots to free before a fetch (only while jobs are running)."""


class Worker:
    """Pulls jobs of `queues` and runs up to `concurrency` of them at once."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        queues: tuple[str, ...],
        concurrency: int,
        runner: JobRunner,
        controls: Controls,
        stats: WorkerStats,
        fetch_wait: float,
    ) -> None:
        self._js = js
        self.queues = queues
        self.concurrency = concurrency
        metrics.SLOTS.set(concurrency)
        self._runner = runner
        self._controls = controls
        self._stats = stats
        self._fetch_wait = fetch_wait
        self._subscriptions: dict[str, JetStreamContext.PullSubscription] = {}
        self._jobs: dict[asyncio.Task[None], ActiveJob] = {}
        self._returns: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._rotation = 0
        self._gather = max(1, concurrency // 4)

    @property
    def in_flight(self) -> int:
        """Jobs running now."""
        return len(self._jobs)

    async def start(self) -> None:
        """Binds to the queues' durable consumers and starts fetching."""
        for queue in self.queues:
            self._subscriptions[queue] = await self._js.pull_subscribe_bind(
                durable=bus.worker_consumer(queue), stream=bus.JOBS_STREAM
            )
        self._loop_task = asyncio.create_task(self._fetch_loop(), name="fetch-loop")
        log.info("worker_started", queues=list(self.queues), concurrency=self.concurrency)

    async def stop(self, grace: float) -> None:
        """Stops fetching, lets running jobs finish for `grace` seconds, hands back the rest."""
        self._stopping = True
        self._slot_freed.set()
        if self._loop_task is not None:
            await self._loop_task
        running = list(self._jobs)
        log.info("worker_stopping", in_flight=len(running), grace=grace)
        if running:
            _done, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                self._jobs[task].hand_back()
            if pending:
                log.info("worker_handing_back", jobs=len(pending))
                await asyncio.wait(pending, timeout=10.0)
        if self._returns:
            await asyncio.wait(list(self._returns), timeout=5.0)
        for subscription in self._subscriptions.values():
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()
        log.info("worker_stopped", processed=self._stats.processed, failed=self._stats.failed)

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - self.in_flight
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            if free < self._gather and self.in_flight:
                free = await self._gather_slots()
                if self._stopping:
                    continue
            active = [q for q in self.queues if not self._controls.is_paused(q)]
            if not active:
                await asyncio.sleep(self._fetch_wait)
                continue
            if await self._take_first(active, free):
                continue
            self._rotation = (self._rotation + 1) % len(active)
            queue = active[self._rotation]
            messages = await self._fetch(queue, free, self._fetch_wait)
            self._start_all(queue, messages)

    async def _gather_slots(self) -> int:
        """Free slots after waiting up to `_GATHER_WAIT` for `_gather` of them."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_GATHER_WAIT):
                while not self._stopping and self.concurrency - self.in_flight < self._gather:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
        return self.concurrency - self.in_flight

    async def _take_first(self, queues: list[str], free: int) -> bool:
        """Probes queues in priority order and starts jobs from the first that has any."""
        for queue in queues:
            wait = self._fetch_wait if len(queues) == 1 else _PROBE_WAIT
            messages = await self._fetch(queue, free, wait)
            if messages:
                self._start_all(queue, messages)
                return True
        return False

    async def _fetch(self, queue: str, batch: int, wait: float) -> list[Msg]:
        started = time.monotonic()
        try:
            return await pull.fetch_ready(self._subscriptions[queue], batch, wait)
        except Exception as error:  # a bus outage: retry after a pause
            log.warning("fetch_failed", queue=queue, error=type(error).__name__)
            await asyncio.sleep(max(0.0, _ERROR_PAUSE - (time.monotonic() - started)))
            return []

    def _start_all(self, queue: str, messages: list[Msg]) -> None:
        for msg in messages:
            if self._stopping:
                # Fetched while stopping: give it straight back to another worker.
                returned = asyncio.create_task(msg.nak())
                self._returns.add(returned)
                returned.add_done_callback(self._returns.discard)
                continue
            active = ActiveJob()
            task = asyncio.create_task(self._runner.run(msg, queue, active))
            self._jobs[task] = active
            self._stats.in_flight = self.in_flight
            metrics.IN_FLIGHT.set(self.in_flight)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._jobs.pop(task, None)
        self._stats.in_flight = self.in_flight
        metrics.IN_FLIGHT.set(self.in_flight)
        self._slot_freed.set()
