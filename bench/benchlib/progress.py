"""Case 4: how long after a worker publishes a subtask's result a WatchTask client sees it.

The bench process subscribes to `events.subtasks.>` itself (a plain NATS subscription sees
what workers publish to the EVENTS stream) and notes when each SUCCEEDED event arrives;
every watcher (include_subtasks with batch_subtasks: one message per round with all the
subtasks that changed in it) notes when each subtask of its task shows up SUCCEEDED in its
stream. Both times come from this process's monotonic clock, so the difference is the
latency a client feels, plus this process's own scheduling delay (it is on the same 2 cores
as the services). Only events published after every watcher has its snapshot count, so the
figure is the steady state of tasks running at full speed. The standard queue is paused
(SystemService) while the tasks are created and the watchers attach, and resumed once every
watcher has received its whole snapshot, so even small tasks run under watch and the figure
is not the snapshot's delivery time.

Variants: one watcher of one task (the latency of the path itself), 100 watchers of one
task (what watchers of one task cost), and 1,000 watchers spread over 100 running tasks, 10
each (what many watched tasks cost).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import nats
from nats.aio.msg import Msg

from kiln.common import bus, subtask_events
from kiln.imagegen.v1 import jobs_pb2
from kiln.tasks.v1 import tasks_pb2

from . import env
from .results import Result, percentile

TASKS_ENV = {"TASKS_MAX_WATCHERS_PER_USER": "2000", "TASKS_MAX_ACTIVE_TASKS_PER_USER": "1000"}
WATCHERS_PER_CHANNEL = 50
"""Watchers share a client channel (an HTTP/2 connection) at most this many at a time."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """`tasks` tasks of `size` subtasks each, watched by `watchers_per_task` clients each."""

    tasks: int
    watchers_per_task: int
    size: int
    target: str = ""

    @property
    def watchers(self) -> int:
        return self.tasks * self.watchers_per_task


def variants(size: int, quick: bool) -> list[Variant]:
    """The case's variants; `size` is the subtasks of the single watched task."""
    return [
        Variant(1, 1, size),
        Variant(1, 100, size, "<= 250 ms"),
        Variant(100, 10, 10 if quick else 20, "<= 500 ms"),
    ]


RESUMED: list[str] = []
"""Status codes of the streams that ended early and were resumed, in this process."""


async def _watch(
    client: env.Client, task_id: str, seen: dict[str, float], ready: asyncio.Future[float]
) -> None:
    """Follows one task to its end, resuming (as the CLI does) from the last version seen
    when the stream ends early."""
    version = 0
    try:
        for attempt in range(5):
            call = client.tasks.WatchTask(
                tasks_pb2.WatchTaskRequest(
                    task_id=task_id,
                    after_version=version,
                    include_subtasks=True,
                    batch_subtasks=True,
                ),
                metadata=client.metadata,
                timeout=600,
            )
            try:
                async for update in call:
                    now = time.monotonic()
                    # The whole snapshot is in once its last piece (with the task) arrived.
                    if not ready.done() and (not update.snapshot or update.HasField("task")):
                        ready.set_result(now)
                    for subtask in update.subtasks:
                        if subtask.state == tasks_pb2.SUBTASK_STATE_SUCCEEDED:
                            seen.setdefault(subtask.id, now)
                    if update.HasField("task"):
                        version = max(version, update.task.version)
            except grpc.aio.AioRpcError as exc:
                if attempt == 4 or exc.code() not in _RESUMABLE:
                    raise
                RESUMED.append(exc.code().name)
            else:
                return
    except BaseException as exc:
        if not ready.done():  # the case waits for every snapshot: fail it instead
            ready.set_exception(exc)
        raise


_RESUMABLE = (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE)


async def _one(
    clients: list[env.Client], admin: env.Client, nats_url: str, variant: Variant
) -> list[float]:
    """Latencies (ms) of one run of `variant`."""
    published: dict[str, float] = {}

    async def on_event(message: Msg) -> None:
        now = time.monotonic()
        for event in subtask_events.decode(message.data, message.headers):
            if event.kind == jobs_pb2.SUBTASK_EVENT_KIND_SUCCEEDED:
                published.setdefault(event.subtask_id, now)

    connection = await nats.connect(nats_url)
    loop = asyncio.get_running_loop()
    try:
        # The task ids are only known after CreateTask, so listen to every task's events.
        subscription = await connection.subscribe(bus.EVENTS_WILDCARD, cb=on_event)
        await admin.pause(tasks_pb2.QUEUE_STANDARD)
        task_ids = [
            (await clients[0].create(env.task_request(variant.size, name="watched"))).id
            for _ in range(variant.tasks)
        ]
        # (task id, what its watcher saw), one per watcher
        seen: list[tuple[str, dict[str, float]]] = []
        ready: list[asyncio.Future[float]] = []
        streams = []
        for i in range(variant.watchers):
            task_id = task_ids[i % variant.tasks]
            seen.append((task_id, {}))
            ready.append(loop.create_future())
            client = clients[1 + i // WATCHERS_PER_CHANNEL]  # the first creates the tasks
            streams.append(asyncio.create_task(_watch(client, task_id, seen[-1][1], ready[-1])))
        await asyncio.wait_for(asyncio.gather(*ready), timeout=300)
        await admin.resume(tasks_pb2.QUEUE_STANDARD)
        await asyncio.gather(*streams)
        await subscription.unsubscribe()
    finally:
        await connection.close()
    steady = max(f.result() for f in ready)
    latencies = []
    for task_id, watcher in seen:
        for subtask_id, shown in watcher.items():
            sent = published.get(subtask_id)
            if sent is None:
                raise RuntimeError(f"{subtask_id} was seen succeeded but never published")
            if sent > steady:
                latencies.append((shown - sent) * 1000)
        if len(watcher) != variant.size:
            raise RuntimeError(f"a watcher of {task_id} saw {len(watcher)} of {variant.size}")
    if not latencies:
        raise RuntimeError("the tasks finished before the watchers were attached")
    return sorted(latencies)


async def _measure(
    target: str, tokens: tuple[str, str], nats_url: str, found: list[Variant], runs: int
) -> list[Result]:
    results = []
    channels = 1 + max(v.watchers for v in found) // WATCHERS_PER_CHANNEL
    clients = [env.Client(target, tokens[0]) for _ in range(channels)]
    try:
        async with env.client(target, tokens[1]) as admin:
            for variant in found:
                p50, p99 = [], []
                for run in range(runs + 1):
                    latencies = await _one(clients, admin, nats_url, variant)
                    if run:
                        p50.append(percentile(latencies, 50))
                        p99.append(percentile(latencies, 99))
                parameters = {
                    "watchers": variant.watchers, "tasks": variant.tasks,
                    "subtasks": variant.size, "provider": "instant", "workers": 2,
                    "batched": True,
                }  # fmt: skip
                note = f"streams resumed: {len(RESUMED)} ({', '.join(sorted(set(RESUMED)))})"
                if not RESUMED:
                    note = ""
                RESUMED.clear()
                results += [
                    Result.of("4 progress latency p50", parameters, "ms", p50, note=note),
                    Result.of(
                        "4 progress latency p99", parameters, "ms", p99, target=variant.target
                    ),
                ]
    finally:
        for client in clients:
            await client.close()
    return results


def run(servers: env.Servers, size: int, runs: int, quick: bool = False) -> list[Result]:
    """Case 4 with two instant workers."""
    with servers.stack(workers=2, worker_env=env.instant_workers(), tasks_env=TASKS_ENV) as (
        stack,
        nats_url,
    ):
        tokens = (stack.token(), stack.admin_token())
        return env.arun(_measure(stack.tasks.target, tokens, nats_url, variants(size, quick), runs))
