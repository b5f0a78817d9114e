"""The mixed run: 50 concurrent CreateTask callers and 200 concurrent watchers for a minute
against real processes. Reports errors (there must be none), CreateTask and first-snapshot
latency percentiles, and the peak memory (VmHWM) of every process."""

from __future__ import annotations

import asyncio
import collections
import random
import time
from typing import Any

import grpc
import pytest
from load import clients, measure

from kiln.common.testing.nats_server import NatsServer
from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

CREATORS = 50
WATCHERS = 200
DURATION = 60.0


class Run:
    """Shared state of one mixed run."""

    def __init__(self, stub: Any, users: list[tuple[tuple[str, str], ...]]) -> None:
        self.stub = stub
        self.users = users
        self.deadline = time.monotonic() + DURATION
        self.create_latency: list[float] = []
        self.snapshot_latency: list[float] = []
        self.errors: collections.Counter[str] = collections.Counter()
        self.recent: dict[int, list[str]] = collections.defaultdict(list)
        self.watch_updates = 0
        self.watches_completed = 0
        self.watches_started = 0
        self.cut_before_snapshot = 0
        """Watches the deadline cancelled before their first message (at most one a loop)."""
        self.open_watches: set[Any] = set()

    def running(self) -> bool:
        return time.monotonic() < self.deadline

    async def create_loop(self, n: int) -> None:
        metadata = self.users[n]
        while self.running():
            started = time.perf_counter()
            try:
                response = await self.stub.CreateTask(
                    clients.task_request(), metadata=metadata, timeout=30
                )
            except grpc.aio.AioRpcError as error:
                self.errors[f"CreateTask {error.code().name}: {error.details()}"] += 1
                continue
            self.create_latency.append(time.perf_counter() - started)
            self.recent[n].append(response.task.id)
            del self.recent[n][:-20]

    async def watch_loop(self, n: int) -> None:
        owner = n % CREATORS
        metadata = self.users[owner]
        while self.running():
            if not self.recent[owner]:
                await asyncio.sleep(0.05)
                continue
            task_id = random.choice(self.recent[owner])
            started = time.perf_counter()
            call = self.stub.WatchTask(
                tasks_pb2.WatchTaskRequest(task_id=task_id), metadata=metadata
            )
            self.open_watches.add(call)
            self.watches_started += 1
            try:
                if not await self.follow(call, started):
                    self.cut_before_snapshot += 1
            finally:
                self.open_watches.discard(call)

    async def follow(self, call: Any, started: float) -> bool:
        """Reads one watch to its end (or the deadline); whether its snapshot arrived."""
        first = True
        try:
            async for _update in call:
                if first:
                    self.snapshot_latency.append(time.perf_counter() - started)
                    first = False
                self.watch_updates += 1
                if not self.running():
                    call.cancel()
                    break
            else:
                self.watches_completed += 1
                if first:
                    self.errors["WatchTask ended OK without a snapshot"] += 1
                    return True  # counted as an error, not as cut by the deadline
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED or self.running():
                self.errors[f"WatchTask {error.code().name}: {error.details()}"] += 1
                return True  # counted as an error
        except asyncio.CancelledError:
            # grpc.aio raises this in the reader when its call is cancelled locally,
            # which only the deadline does; anything else is a real cancellation.
            if self.running() or not call.cancelled():
                raise
        return not first

    async def stop_watches_at_deadline(self) -> None:
        """A watch of a task with nothing new blocks; the client ends it at the deadline."""
        await asyncio.sleep(max(0.0, self.deadline - time.monotonic()))
        for call in list(self.open_watches):
            call.cancel()


def _peaks(stack: KilnStack, nats: NatsServer) -> dict[str, int]:
    found = {}
    for process in (stack.auth, stack.tasks, *stack.workers):
        if process.process is not None:
            found[process.name] = measure.memory_kib(process.process.pid, "VmHWM") // 1024
    if nats.pid is not None:
        found["nats-server"] = measure.memory_kib(nats.pid, "VmHWM") // 1024
    return found


@pytest.mark.long
@pytest.mark.timeout(400)
async def test_mixed_load_runs_without_errors(load_stack: tuple[KilnStack, NatsServer]) -> None:
    """For 60 s, 50 callers (one user each) create one-image tasks back to back while 200
    watchers follow their recent tasks (re-watching when one ends). No call may fail; the
    figures are printed for the reliability report."""
    stack, nats = load_stack
    async with grpc.aio.insecure_channel(stack.tasks.target) as channel:
        stub: Any = tasks_pb2_grpc.TaskServiceStub(channel)
        users = list(
            await asyncio.gather(*(clients.sign_up(stack.auth.target) for _ in range(CREATORS)))
        )
        run = Run(stub, users)
        await asyncio.gather(
            *(run.create_loop(n) for n in range(CREATORS)),
            *(run.watch_loop(n) for n in range(WATCHERS)),
            run.stop_watches_at_deadline(),
        )
    figures = {
        "tasks_created": len(run.create_latency),
        "creates_per_second": round(len(run.create_latency) / DURATION, 1),
        "create_latency_ms": measure.percentiles(run.create_latency),
        "watches_started": run.watches_started,
        "watches_opened": len(run.snapshot_latency),
        "watches_cut_before_snapshot": run.cut_before_snapshot,
        "watch_snapshot_latency_ms": measure.percentiles(run.snapshot_latency),
        "watch_updates": run.watch_updates,
        "watches_completed": run.watches_completed,
        "errors": dict(run.errors),
        "peak_rss_mib": _peaks(stack, nats),
    }
    print(f"\nmixed run figures: {figures}")
    assert not run.errors, run.errors
    assert run.create_latency and run.snapshot_latency
    # Every watch got its snapshot, except those the deadline cut first (one per watcher
    # at most): none is dropped without being counted (errors are asserted away above).
    assert run.watches_started == len(run.snapshot_latency) + run.cut_before_snapshot, figures
    assert run.cut_before_snapshot <= WATCHERS, figures
