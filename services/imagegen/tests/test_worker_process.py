"""Worker processes under faults: crashes, SIGTERM and kill -9 (real subprocesses)."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from collections.abc import Iterator

import nats.js.errors
import pytest
from nats.js.kv import KeyValue
from worker_harness import FAST_ENV, Kind, make_job, running_worker, tasks_side, worker_config

from imagegen import faults
from kiln.common import bus
from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.services import ServiceProcess

pytestmark = pytest.mark.timeout(90)

CRASH_MARKER = "__crash_the_worker__"
ACK_WAIT = 20.0
"""Long, so a hand-back (at once) cannot be mistaken for an ack_wait redelivery."""


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Worker processes a test starts; all stopped at the end."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.close()


def _worker(
    processes: list[ServiceProcess], nats_url: str, *args: str, **env: str
) -> ServiceProcess:
    process = ServiceProcess(
        "imagegen",
        {**FAST_ENV, "GRPC_PORT": "0", "LOG_LEVEL": "info", "NATS_URL": nats_url, **env},
        ["worker", *args],
    )
    processes.append(process)
    return process


async def _start(process: ServiceProcess) -> None:
    await asyncio.to_thread(process.start, True)


async def test_job_that_always_crashes_the_worker_ends_after_max_deliver(
    private_nats: NatsServer, processes: list[ServiceProcess]
) -> None:
    """A job that kills its worker every time (fault injection) is delivered exactly
    JOB_MAX_DELIVER times, then JetStream stops delivering it and publishes the
    max-deliveries advisory (captured for the tasks service); workers keep running after."""
    settings = worker_config(private_nats.url)
    async with tasks_side(private_nats.url, settings) as tasks:
        job = make_job(f"a bad job {CRASH_MARKER}")
        await tasks.publish(job)
        for delivery in range(1, settings.job_max_deliver + 1):
            worker = _worker(
                processes,
                private_nats.url,
                "--queues",
                "standard",
                IMAGEGEN_FAULT_CRASH_MARKER=CRASH_MARKER,
            )
            worker.start(wait=False)
            await tasks.wait_for(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED, delivery, 20)
            assert worker.process is not None
            code = await asyncio.to_thread(worker.process.wait, 10)
            assert code == faults.CRASH_EXIT_CODE

        survivor = _worker(
            processes,
            private_nats.url,
            "--queues",
            "standard",
            IMAGEGEN_FAULT_CRASH_MARKER=CRASH_MARKER,
        )
        await _start(survivor)
        await asyncio.sleep(settings.job_ack_wait + 1.5)
        started = tasks.of(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        assert [e.delivery for e in started] == [1, 2, 3, 4]
        assert survivor.process is not None and survivor.process.poll() is None
        advisories = await tasks.js.stream_info(bus.ADVISORIES_STREAM)
        assert advisories.state.messages == 1


async def test_sigterm_finishes_the_running_job_and_exits_zero(
    private_nats: NatsServer, processes: list[ServiceProcess]
) -> None:
    """SIGTERM mid-job: the worker stops fetching, finishes the job within the grace period,
    deletes its heartbeat and exits 0; a job queued meanwhile stays for another worker."""
    settings = worker_config(private_nats.url)
    async with tasks_side(private_nats.url, settings) as tasks:
        worker = _worker(
            processes,
            private_nats.url,
            "--queues",
            "standard",
            "--concurrency",
            "1",
            IMAGEGEN_PROVIDER_OPTIONS_STANDARD='{"step_delay": 0.2}',
            GRACE_PERIOD_SECONDS="10",
        )
        await _start(worker)
        running = make_job()
        await tasks.publish(running)
        await tasks.wait_for(running.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        waiting = make_job()
        await tasks.publish(waiting)
        worker.signal(signal.SIGTERM)
        assert worker.process is not None
        code = await asyncio.to_thread(worker.process.wait, 15)

        assert code == 0
        done = await tasks.wait_terminal(running.subtask_id, within=10)
        assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED
        assert not tasks.of(waiting.subtask_id)
        assert await tasks.jobs_left() == 1
        workers = await tasks.js.key_value(bus.WORKERS_BUCKET)
        assert not await _keys(workers)


async def test_sigterm_hands_back_a_job_that_outlasts_the_grace_period(
    private_nats: NatsServer, processes: list[ServiceProcess]
) -> None:
    """A job still rendering when the grace period ends is handed back with nak (no delay):
    another worker starts it at once, not after ack_wait, and it succeeds once."""
    env = {"JOB_ACK_WAIT_SECONDS": str(ACK_WAIT)}
    settings = worker_config(private_nats.url, **env)
    async with tasks_side(private_nats.url, settings) as tasks:
        worker = _worker(
            processes,
            private_nats.url,
            "--queues",
            "standard",
            IMAGEGEN_PROVIDER_OPTIONS_STANDARD='{"step_delay": 1}',
            GRACE_PERIOD_SECONDS="0.5",
            **env,
        )
        await _start(worker)
        job = make_job()
        # An ack_wait redelivery cannot come before published + ACK_WAIT (heartbeats only
        # push it later): the bound that tells the hand-back from a redelivery.
        published = time.monotonic()
        await tasks.publish(job)
        await tasks.wait_for(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        worker.signal(signal.SIGTERM)
        assert worker.process is not None
        assert await asyncio.to_thread(worker.process.wait, 15) == 0

        async with running_worker(settings):
            started = await tasks.wait_for(
                job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED, 2, within=ACK_WAIT
            )
            started_again = started[1]
            assert time.monotonic() < published + ACK_WAIT, "restarted by ack_wait, not nak"
            assert started_again.delivery == 2
            done = await tasks.wait_terminal(job.subtask_id, within=15)
        assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED
        assert len(tasks.of(job.subtask_id, Kind.SUBTASK_EVENT_KIND_SUCCEEDED)) == 1


async def test_kill_9_mid_job_completes_exactly_once_elsewhere(
    private_nats: NatsServer, processes: list[ServiceProcess]
) -> None:
    """kill -9 a worker holding started jobs: after ack_wait another worker gets them (same
    attempt, higher delivery) and each ends with one SUCCEEDED event and one stored image."""
    settings = worker_config(private_nats.url)
    async with tasks_side(private_nats.url, settings) as tasks:
        slow = '{"step_delay": 0.4}'
        first = _worker(
            processes,
            private_nats.url,
            "--queues",
            "standard",
            "--concurrency",
            "3",
            IMAGEGEN_PROVIDER_OPTIONS_STANDARD=slow,
        )
        await _start(first)
        jobs = [make_job(seed=i, attempt=2) for i in range(3)]
        for job in jobs:
            await tasks.publish(job)
        for job in jobs:
            await tasks.wait_for(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        first.kill()

        second = _worker(processes, private_nats.url, "--queues", "standard", "--concurrency", "3")
        await _start(second)
        for job in jobs:
            done = await tasks.wait_terminal(job.subtask_id, within=20)
            assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED
            assert (done.attempt, done.delivery) == (2, 2)
            assert len(tasks.of(job.subtask_id, Kind.SUBTASK_EVENT_KIND_SUCCEEDED)) == 1
        names = await tasks.object_names()
        assert len(names) == 2 * len(jobs)  # one image and one thumbnail each
        for job in jobs:
            (done,) = tasks.of(job.subtask_id, Kind.SUBTASK_EVENT_KIND_SUCCEEDED)
            data = await tasks.read_object(done.result.object_name)
            assert len(data) == done.result.size_bytes
        await tasks.wait_jobs_left(0)


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return list(await kv.keys())
    except nats.js.errors.NoKeysError:
        return []


async def test_frozen_worker_resumed_after_redelivery_changes_nothing(
    private_nats: NatsServer, processes: list[ServiceProcess]
) -> None:
    """SIGSTOP a worker mid-job past ack_wait: another worker completes the job; after
    SIGCONT the late worker notices its lease is gone and stores and reports nothing."""
    settings = worker_config(private_nats.url)
    async with tasks_side(private_nats.url, settings) as tasks:
        frozen = _worker(
            processes,
            private_nats.url,
            "--queues",
            "standard",
            IMAGEGEN_PROVIDER_OPTIONS_STANDARD='{"step_delay": 0.3}',
        )
        await _start(frozen)
        job = make_job()
        await tasks.publish(job)
        await tasks.wait_for(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        frozen.signal(signal.SIGSTOP)
        async with running_worker(settings):
            done = await tasks.wait_terminal(job.subtask_id, within=15)
            assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED
            assert done.delivery == 2
            frozen.signal(signal.SIGCONT)
            await asyncio.sleep(3.0)

        late = [e for e in tasks.of(job.subtask_id) if e.delivery == 1]
        assert all(e.kind != Kind.SUBTASK_EVENT_KIND_SUCCEEDED for e in late), frozen.log_tail(60)
        assert all(e.kind != Kind.SUBTASK_EVENT_KIND_FAILED for e in late)
        assert len(await tasks.object_names()) == 2
        data = await tasks.read_object(done.result.object_name)
        assert hashlib.sha256(data).hexdigest() == done.result.sha256
        assert "job_lease_lost" in frozen.log_tail(200)
        assert await tasks.jobs_left() == 0


async def test_nats_restart_mid_job_loses_nothing(private_nats: NatsServer) -> None:
    """NATS stops for longer than ack_wait while a job renders: the worker's in_progress
    renewals go unconfirmed, so it abandons its delivery (no store, no report); after the
    restart the redelivery succeeds: one SUCCEEDED event, one image whose checksum matches.
    The cancellation watch is rebuilt after the reconnect."""
    env = {"IMAGEGEN_PROVIDER_OPTIONS_STANDARD": '{"step_delay": 0.3}'}
    settings = worker_config(private_nats.url, **env)
    async with tasks_side(private_nats.url, settings) as tasks, running_worker(settings):
        job = make_job()
        await tasks.publish(job)
        await tasks.wait_for(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        await asyncio.to_thread(private_nats.stop)
        await asyncio.sleep(3.0)
        await asyncio.to_thread(private_nats.start)

        async with asyncio.timeout(30):
            while True:
                stored = await tasks.stored_events(job.subtask_id)
                succeeded = [e for e in stored if e.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED]
                if succeeded and await tasks.jobs_left() == 0:
                    break
                await asyncio.sleep(0.5)
        assert len(succeeded) == 1, [(e.delivery, e.kind) for e in stored]
        assert len(await tasks.object_names()) == 2
        data = await tasks.read_object(succeeded[0].result.object_name)
        assert hashlib.sha256(data).hexdigest() == succeeded[0].result.sha256

        # The cancellation watch came back with the connection.
        cancelled = make_job()
        await tasks.kv_put(bus.CANCELLATIONS_BUCKET, cancelled.task_id, b"cancelled")
        await asyncio.sleep(1.0)
        await tasks.publish(cancelled)
        async with asyncio.timeout(15):
            while not any(  # noqa: ASYNC110 - polls the stream, which has no event to await
                e.kind == Kind.SUBTASK_EVENT_KIND_CANCELLED
                for e in await tasks.stored_events(cancelled.subtask_id)
            ):
                await asyncio.sleep(0.2)
        stored = await tasks.stored_events(job.subtask_id)
        assert [e.kind for e in stored].count(Kind.SUBTASK_EVENT_KIND_SUCCEEDED) == 1
