"""Operator controls: cancelled tasks and paused queues, read from KV buckets by watches."""

from __future__ import annotations

import asyncio

import pytest
from worker_harness import Kind, bus_with_worker, make_job, until

from imagegen.job_runner import ActiveJob
from kiln.common import bus
from kiln.common.testing.nats_server import NatsServer

pytestmark = pytest.mark.timeout(60)


async def test_cancelled_task_is_skipped_before_starting(private_nats: NatsServer) -> None:
    """A job whose task is in the cancellations bucket is not rendered: CANCELLED, acked."""
    async with bus_with_worker(private_nats.url) as (tasks, runtime):
        job = make_job()
        await tasks.kv_put(bus.CANCELLATIONS_BUCKET, job.task_id, b"cancelled")
        await until(lambda: runtime.controls.is_cancelled(job.task_id))
        await tasks.publish(job)
        done = await tasks.wait_terminal(job.subtask_id)

        assert done.kind == Kind.SUBTASK_EVENT_KIND_CANCELLED
        assert not tasks.of(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        assert not await tasks.object_names()
        await tasks.wait_jobs_left(0)


async def test_cancellation_stops_a_running_render(private_nats: NatsServer) -> None:
    """Cancelling the task while its job renders stops the render within the check interval,
    reports CANCELLED and stores nothing."""
    env = {"IMAGEGEN_PROVIDER_OPTIONS_STANDARD": '{"step_delay": 0.5}'}
    async with bus_with_worker(private_nats.url, env) as (tasks, _runtime):
        job = make_job()
        await tasks.publish(job)
        await tasks.wait_for(job.subtask_id, Kind.SUBTASK_EVENT_KIND_STARTED)
        await tasks.kv_put(bus.CANCELLATIONS_BUCKET, job.task_id, b"cancelled")
        done = await tasks.wait_terminal(job.subtask_id, within=3)

        assert done.kind == Kind.SUBTASK_EVENT_KIND_CANCELLED
        assert not tasks.of(job.subtask_id, Kind.SUBTASK_EVENT_KIND_SUCCEEDED)
        assert not await tasks.object_names()
        await tasks.wait_jobs_left(0)


async def test_paused_queue_holds_jobs_until_resumed(private_nats: NatsServer) -> None:
    """A paused queue's jobs are not started (the worker stops fetching it); once resumed
    they run, while other queues keep running throughout."""
    async with bus_with_worker(private_nats.url) as (tasks, runtime):
        await tasks.kv_put(bus.QUEUE_STATE_BUCKET, "standard", b"paused")
        await until(lambda: runtime.controls.is_paused("standard"))
        held = make_job(queue="standard")
        other = make_job(queue="high_priority")
        await tasks.publish(held)
        await tasks.publish(other)
        await tasks.wait_terminal(other.subtask_id)
        await asyncio.sleep(1.0)
        assert not tasks.of(held.subtask_id)

        await tasks.kv_put(bus.QUEUE_STATE_BUCKET, "standard", b"active")
        done = await tasks.wait_terminal(held.subtask_id)
        assert done.kind == Kind.SUBTASK_EVENT_KIND_SUCCEEDED


async def test_job_fetched_as_the_queue_pauses_is_put_back(private_nats: NatsServer) -> None:
    """A job fetched just as its queue is paused goes back with a delay, without events,
    and comes back (a later delivery) after the delay."""
    async with bus_with_worker(private_nats.url) as (tasks, runtime):
        runtime.worker.queues = ("high_priority",)  # keep the worker's own loop off `standard`
        await tasks.kv_put(bus.QUEUE_STATE_BUCKET, "standard", b"paused")
        await until(lambda: runtime.controls.is_paused("standard"))
        job = make_job(queue="standard")
        await tasks.publish(job)
        puller = await tasks.js.pull_subscribe_bind(
            durable=bus.worker_consumer("standard"), stream=bus.JOBS_STREAM
        )
        (msg,) = await puller.fetch(1, timeout=2)
        await runtime.runner.run(msg, "standard", ActiveJob())
        assert not tasks.of(job.subtask_id)

        (again,) = await puller.fetch(1, timeout=3)
        assert again.metadata.num_delivered == 2
        await again.nak()
