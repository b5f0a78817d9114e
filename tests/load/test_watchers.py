"""T15: 200 concurrent watchers, then every client cancels. The tasks service must free what
the watches held: within 1 s its watcher gauges (kiln_tasks_watchers, _watched_tasks) and
its NATS subscriptions are back at the baseline and all 200 handlers have finished, and its
memory returns to within 10% of the baseline."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import grpc
import pytest
from load import clients, measure

from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

WATCHERS = 200
USERS = 8
TASKS_PER_USER = 5
CHANGES = "tasks.changes."


async def _open_watches(
    stub: Any, targets: list[tuple[tuple[tuple[str, str], ...], str]]
) -> list[Any]:
    """Starts one watch per target and waits for every snapshot."""
    calls = [
        stub.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task_id), metadata=metadata)
        for metadata, task_id in targets
    ]
    snapshots = await asyncio.gather(*(call.read() for call in calls))
    assert all(s is not grpc.aio.EOF and s.snapshot for s in snapshots)
    return calls


async def _cancel_and_wait(
    stack: KilnStack, nats: NatsServer, calls: list[Any], baseline: dict[str, float]
) -> float:
    """Cancels every watch; returns the seconds until the server let go of all of them."""
    port = stack.tasks.metrics_port
    started = time.monotonic()
    for call in calls:
        call.cancel()
    while True:
        finished = measure.metric_sum(port, "kiln_rpc_total", method=clients.WATCH_METHOD)
        watchers = measure.metric_sum(port, "kiln_tasks_watchers")
        watched = measure.metric_sum(port, "kiln_tasks_watched_tasks")
        subs = measure.subscriptions(nats.monitor_url, "tasks", CHANGES)
        if (
            finished - baseline["finished"] >= len(calls)
            and subs <= baseline["subs"]
            and watchers <= baseline["watchers"]
            and watched <= baseline["watched"]
        ):
            return time.monotonic() - started
        if time.monotonic() - started > 10:
            raise AssertionError(f"after 10 s: {finished=} {watchers=} {subs=} {baseline=}")
        await asyncio.sleep(0.02)


@pytest.mark.long
@pytest.mark.timeout(300)
async def test_t15_watchers_are_freed_when_clients_cancel(
    load_stack: tuple[KilnStack, NatsServer],
) -> None:
    """After a warm-up round, 200 watches over 40 pending tasks (8 users) are opened and
    then cancelled: within 1 s the tasks service has ended all 200 handlers (its WatchTask
    counter in /metrics) and holds no `tasks.changes.*` subscription (NATS /connz), and its
    RSS is back within 10% of the pre-watch baseline."""
    stack, nats = load_stack
    pid = stack.tasks.process.pid if stack.tasks.process else 0
    async with grpc.aio.insecure_channel(stack.tasks.target) as channel:
        stub: Any = tasks_pb2_grpc.TaskServiceStub(channel)
        users = [await clients.sign_up(stack.auth.target) for _ in range(USERS)]
        tasks: list[tuple[tuple[tuple[str, str], ...], str]] = []
        for metadata in users:
            for _ in range(TASKS_PER_USER):
                # lumina: no worker serves it, so the task stays pending and watches stay open.
                created = await stub.CreateTask(
                    clients.task_request(tasks_pb2.QUEUE_LUMINA), metadata=metadata
                )
                tasks.append((metadata, created.task.id))
        targets = [tasks[i % len(tasks)] for i in range(WATCHERS)]

        figures: dict[str, Any] = {}
        for round_name in ("warm-up", "measured"):
            gc.collect()
            await asyncio.sleep(1.0)
            baseline = {
                "finished": measure.metric_sum(
                    stack.tasks.metrics_port, "kiln_rpc_total", method=clients.WATCH_METHOD
                ),
                "subs": measure.subscriptions(nats.monitor_url, "tasks", CHANGES),
                "rss": measure.memory_kib(pid, "VmRSS"),
                "watchers": measure.metric_sum(stack.tasks.metrics_port, "kiln_tasks_watchers"),
                "watched": measure.metric_sum(stack.tasks.metrics_port, "kiln_tasks_watched_tasks"),
            }
            calls = await _open_watches(stub, targets)
            during = {
                "subs": measure.subscriptions(nats.monitor_url, "tasks", CHANGES),
                "rss": measure.memory_kib(pid, "VmRSS"),
                "watchers": measure.metric_sum(stack.tasks.metrics_port, "kiln_tasks_watchers"),
                "watched": measure.metric_sum(stack.tasks.metrics_port, "kiln_tasks_watched_tasks"),
            }
            released = await _cancel_and_wait(stack, nats, calls, baseline)
            await asyncio.sleep(1.0)
            after_rss = measure.memory_kib(pid, "VmRSS")
            figures[round_name] = {
                "baseline_rss_kib": baseline["rss"],
                "with_watchers_rss_kib": during["rss"],
                "after_rss_kib": after_rss,
                "subscriptions_baseline": baseline["subs"],
                "subscriptions_with_watchers": during["subs"],
                "watchers_gauge_baseline": baseline["watchers"],
                "watchers_gauge_with_watchers": during["watchers"],
                "watched_tasks_gauge_with_watchers": during["watched"],
                "released_seconds": round(released, 3),
            }
        print(f"\nT15 figures: {figures}")
        measured = figures["measured"]
        assert (
            measured["subscriptions_with_watchers"]
            == len(tasks) + measured["subscriptions_baseline"]
        )
        assert measured["watchers_gauge_with_watchers"] == WATCHERS + baseline["watchers"]
        assert measured["watched_tasks_gauge_with_watchers"] == len(tasks) + baseline["watched"]
        # RELIABILITY T15: back to baseline within 1 s of the clients cancelling.
        assert measured["released_seconds"] <= 1.0, measured
        assert measured["after_rss_kib"] <= measured["baseline_rss_kib"] * 1.10, measured
