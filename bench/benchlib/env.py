"""The stack a case runs against: private NATS and PostgreSQL, the services as real
processes (kiln.common.testing), and an asyncio gRPC client with a user's token."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import grpc
import nats
import uvloop
from nats.js.api import StreamInfo

from kiln.common import bus
from kiln.common.testing import NatsServer, PostgresServer
from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

T = TypeVar("T")

QUIET = {"LOG_LEVEL": "warning", "METRICS_PORT": "-1"}
"""Every bench process: no per-RPC info lines (logging is not what is measured here)."""

# Subtask counts and the variable shapes that give them (a x b x c).
_SHAPES = {1: (1, 1, 1), 20: (5, 4, 1), 100: (10, 10, 1), 200: (10, 20, 1), 500: (10, 10, 5),
           1000: (10, 10, 10), 2000: (20, 10, 10), 10_000: (25, 20, 20)}  # fmt: skip


def instant_workers(concurrency: int = 64) -> dict[str, str]:
    """Worker settings for the instant provider (a tiny image at once). Concurrency is
    high because a job is nothing but round trips to NATS."""
    return {"WORKER_QUEUES": "standard", "IMAGEGEN_PROVIDER_STANDARD": "instant",
            "WORKER_CONCURRENCY": str(concurrency)}  # fmt: skip


def procedural_workers(concurrency: int = 2) -> dict[str, str]:
    """Worker settings for the built-in Pillow renderer."""
    return {"WORKER_QUEUES": "standard", "IMAGEGEN_PROVIDER_STANDARD": "procedural",
            "WORKER_CONCURRENCY": str(concurrency)}  # fmt: skip


def task_request(
    size: int,
    *,
    name: str = "bench",
    ratio: str = "16:9",
    output_format: int = tasks_pb2.OUTPUT_FORMAT_PNG,
) -> tasks_pb2.CreateTaskRequest:
    """A task of `size` subtasks over three variables, on the standard queue."""
    a, b, c = _SHAPES.get(size, (size, 1, 1))
    request = tasks_pb2.CreateTaskRequest(
        task_name=f"{name} {size}",
        prompt_template="a {style} photograph of a {animal} in a {place}, golden hour",
        settings=tasks_pb2.TaskSettings(
            ratio=ratio,
            queue=tasks_pb2.QUEUE_STANDARD,
            output_format=output_format,  # type: ignore[arg-type]
        ),
    )
    request.variables["style"].values.extend(f"style {i}" for i in range(a))
    request.variables["animal"].values.extend(f"animal {i}" for i in range(b))
    request.variables["place"].values.extend(f"place {i}" for i in range(c))
    return request


class Client:
    """TaskService and SystemService stubs on one channel, authenticated as one user."""

    def __init__(self, target: str, token: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.tasks = tasks_pb2_grpc.TaskServiceStub(self.channel)
        self.system = tasks_pb2_grpc.SystemServiceStub(self.channel)

    async def create(self, request: tasks_pb2.CreateTaskRequest) -> tasks_pb2.Task:
        """CreateTask; returns the task."""
        response: tasks_pb2.CreateTaskResponse = await self.tasks.CreateTask(
            request, metadata=self.metadata, timeout=60
        )
        return response.task

    async def get(self, task_id: str) -> tasks_pb2.Task:
        """GetTask."""
        request = tasks_pb2.GetTaskRequest(task_id=task_id)
        response: tasks_pb2.GetTaskResponse = await self.tasks.GetTask(
            request, metadata=self.metadata, timeout=30
        )
        return response.task

    async def cancel(self, task_id: str) -> None:
        """CancelTask."""
        request = tasks_pb2.CancelTaskRequest(task_id=task_id)
        await self.tasks.CancelTask(request, metadata=self.metadata, timeout=30)

    async def pause(self, queue: int) -> None:
        """PauseQueue (admin)."""
        request = tasks_pb2.PauseQueueRequest(queue=queue)  # type: ignore[arg-type]
        await self.system.PauseQueue(request, metadata=self.metadata, timeout=30)

    async def resume(self, queue: int) -> None:
        """ResumeQueue (admin)."""
        request = tasks_pb2.ResumeQueueRequest(queue=queue)  # type: ignore[arg-type]
        await self.system.ResumeQueue(request, metadata=self.metadata, timeout=30)

    async def until_done(self, task_id: str, limit: float = 600) -> tasks_pb2.Task:
        """Watches the task (snapshots only) until its stream ends at a terminal state with
        every subtask ended; returns the last snapshot."""
        last = None
        call = self.tasks.WatchTask(
            tasks_pb2.WatchTaskRequest(task_id=task_id), metadata=self.metadata, timeout=limit
        )
        async for update in call:
            last = update.task
        if last is None or not last.all_subtasks_completed:
            raise RuntimeError(f"watch of {task_id} ended before the task did: {last}")
        done: tasks_pb2.Task = last
        return done

    async def close(self) -> None:
        """Closes the channel."""
        await self.channel.close()


@contextlib.asynccontextmanager
async def client(target: str, token: str) -> AsyncIterator[Client]:
    """A Client closed on exit."""
    made = Client(target, token)
    try:
        yield made
    finally:
        await made.close()


@dataclasses.dataclass
class Servers:
    """One PostgreSQL for the whole run (a database per stack) and the data folder."""

    postgres: PostgresServer
    data_dir: Path
    profile_dir: Path | None = None
    overrides: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Settings given with `--set`, applied to every process last (experiments)."""
    monitors: dict[str, str] = dataclasses.field(default_factory=dict)
    """The monitoring endpoint of each running nats-server, by its client URL."""
    nats_pids: dict[str, int | None] = dataclasses.field(default_factory=dict)
    """The pid of each running nats-server, by its client URL."""

    def database(self) -> str:
        """A fresh, empty database; returns its URL."""
        return self.postgres.create_database(f"bench_{uuid.uuid4().hex[:10]}")

    @contextlib.contextmanager
    def nats(self) -> Iterator[str]:
        """A fresh nats-server; yields its URL."""
        with NatsServer() as server:
            self.monitors[server.url] = server.monitor_url
            self.nats_pids[server.url] = server.pid
            try:
                yield server.url
            finally:
                self.monitors.pop(server.url, None)
                self.nats_pids.pop(server.url, None)

    @contextlib.contextmanager
    def stack(
        self,
        *,
        workers: int = 0,
        worker_env: Mapping[str, str] | None = None,
        tasks_env: Mapping[str, str] | None = None,
    ) -> Iterator[tuple[KilnStack, str]]:
        """A whole Kiln on a fresh NATS and database; yields it and the NATS URL. With
        `profile_dir`, tasks and the workers run under cProfile and leave `<name>.prof`
        there when the stack closes."""
        with self.nats() as nats_url:
            data = self.data_dir / uuid.uuid4().hex[:8]
            stack = KilnStack.start(
                nats_url,
                self.database(),
                data,
                worker_env={**QUIET, **(worker_env or {}), **self.overrides},
                workers=workers,
                extra_env={**QUIET, **(tasks_env or {}), **self.overrides},
            )
            try:
                if self.profile_dir is not None:
                    _profile(stack, self.profile_dir)
                yield stack, nats_url
            finally:
                stack.close()


def _profile(stack: KilnStack, directory: Path) -> None:
    """Restarts tasks and the workers under `python -m cProfile` on the same ports."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    for process in (stack.tasks, *stack.workers):
        process.stop()
        output = directory / f"{process.name}-{stamp}.prof"
        process.args = ["-o", str(output), "-m", process.module, *process.args]
        process.module = "cProfile"
        process.start()


async def stream_info(nats_url: str) -> StreamInfo:
    """The JOBS stream's state, on a short-lived connection."""
    connection = await nats.connect(nats_url)
    try:
        return await connection.jetstream().stream_info(bus.JOBS_STREAM)
    finally:
        await connection.close()


def arun(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a case's measurement on uvloop, as the services do."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
