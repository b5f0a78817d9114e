"""Case 4: how long after a worker publishes a subtask's result a WatchTask client sees it.

The bench process subscribes to `events.subtasks.<task_id>` itself (a plain NATS
subscription sees what workers publish to the EVENTS stream) and notes when each SUCCEEDED
event arrives; 100 watchers (include_subtasks) note when each subtask shows up SUCCEEDED in
their stream. Both times come from this process's monotonic clock, so the difference is
the latency a client feels, plus this process's own scheduling delay (it is on the same
2 cores as the services). Only events published after every watcher has its snapshot
count, so the figure is the steady state of a task running at full speed. The standard
queue is paused (SystemService) while the task is created and the watchers attach, and
resumed once every watcher has received its whole snapshot (one message per subtask), so even
a small task runs under watch and the figure is not the snapshot's delivery time.
"""

from __future__ import annotations

import asyncio
import time

import nats
from nats.aio.msg import Msg

from kiln.common import bus, subtask_events
from kiln.imagegen.v1 import jobs_pb2
from kiln.tasks.v1 import tasks_pb2

from . import env
from .results import Result, percentile

WATCHERS = (1, 100)
"""One watcher shows the latency of the path itself; 100 show what watchers cost."""
TASKS_ENV = {"TASKS_MAX_WATCHERS_PER_USER": "1000"}


async def _watch(
    client: env.Client,
    task_id: str,
    size: int,
    seen: dict[str, float],
    ready: asyncio.Future[float],
) -> None:
    call = client.tasks.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=task_id, include_subtasks=True),
        metadata=client.metadata,
        timeout=600,
    )
    snapshot = 0
    async for update in call:
        now = time.monotonic()
        # Ready once the whole opening snapshot (one message per subtask) has arrived.
        snapshot += update.snapshot
        if not ready.done() and (snapshot >= size or not update.snapshot):
            ready.set_result(now)
        subtask = update.subtask
        if subtask.id and subtask.state == tasks_pb2.SUBTASK_STATE_SUCCEEDED:
            seen.setdefault(subtask.id, now)


async def _one(
    client: env.Client, admin: env.Client, nats_url: str, size: int, watchers: int
) -> list[float]:
    """Latencies (ms) of one task of `size` subtasks watched by `watchers` clients."""
    published: dict[str, float] = {}

    async def on_event(message: Msg) -> None:
        now = time.monotonic()
        for event in subtask_events.decode(message.data, message.headers):
            if event.kind == jobs_pb2.SUBTASK_EVENT_KIND_SUCCEEDED:
                published.setdefault(event.subtask_id, now)

    connection = await nats.connect(nats_url)
    loop = asyncio.get_running_loop()
    try:
        # The task id is only known after CreateTask, so listen to every task's events.
        subscription = await connection.subscribe(bus.EVENTS_WILDCARD, cb=on_event)
        await admin.pause(tasks_pb2.QUEUE_STANDARD)
        task = await client.create(env.task_request(size, name="watched"))
        seen: list[dict[str, float]] = [{} for _ in range(watchers)]
        ready: list[asyncio.Future[float]] = [loop.create_future() for _ in range(watchers)]
        streams = [
            asyncio.create_task(_watch(client, task.id, size, seen[i], ready[i]))
            for i in range(watchers)
        ]
        await asyncio.gather(*ready)
        await admin.resume(tasks_pb2.QUEUE_STANDARD)
        await asyncio.gather(*streams)
        await subscription.unsubscribe()
    finally:
        await connection.close()
    steady = max(f.result() for f in ready)
    latencies = []
    for subtask_id, sent in published.items():
        if sent <= steady:
            continue
        for watcher in seen:
            if subtask_id not in watcher:
                raise RuntimeError(f"a watcher never saw {subtask_id} succeed")
            latencies.append((watcher[subtask_id] - sent) * 1000)
    if not latencies:
        raise RuntimeError("the task finished before the watchers were attached")
    return sorted(latencies)


async def _measure(
    target: str, tokens: tuple[str, str], nats_url: str, size: int, runs: int
) -> list[Result]:
    results = []
    async with env.client(target, tokens[0]) as client, env.client(target, tokens[1]) as admin:
        for watchers in WATCHERS:
            p50, p99 = [], []
            for run in range(runs + 1):
                latencies = await _one(client, admin, nats_url, size, watchers)
                if run:
                    p50.append(percentile(latencies, 50))
                    p99.append(percentile(latencies, 99))
            parameters = {"watchers": watchers, "subtasks": size, "provider": "instant",
                          "workers": 2}  # fmt: skip
            target_text = "<= 250 ms" if watchers == 100 else ""
            results += [
                Result.of("4 progress latency p50", parameters, "ms", p50),
                Result.of("4 progress latency p99", parameters, "ms", p99, target=target_text),
            ]
    return results


def run(servers: env.Servers, size: int, runs: int) -> list[Result]:
    """Case 4 with two instant workers."""
    with servers.stack(workers=2, worker_env=env.instant_workers(), tasks_env=TASKS_ENV) as (
        stack,
        nats_url,
    ):
        tokens = (stack.token(), stack.admin_token())
        return env.arun(_measure(stack.tasks.target, tokens, nats_url, size, runs))
