"""Case 5: GetTask and ListTasks throughput and p99 latency with 50 concurrent clients, and
the same clients against the floor RPC.

The load clients run in `PROCESSES` separate processes (10 clients each, each client with
its own channel, that is its own HTTP/2 connection) so the bench process's own Python is
not what is measured; every client calls in a loop, `per_client` calls per run. The user
owns `SEEDED_TASKS` finished 1-subtask tasks (rendered by one instant worker first), so
GetTask reads a finished task and ListTasks returns a full first page (50, the default
page size). The floor is the same clients calling a do-nothing GetTask on a bench-only
server with the tasks service's interceptor chain (`floor_rpc.py`); each read is also
reported as a fraction of the floor's calls/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from kiln.tasks.v1 import tasks_pb2

from . import env
from .results import Result, percentile

CLIENTS = 50
PROCESSES = 5
SEEDED_TASKS = 60
TASKS_ENV = {"TASKS_MAX_ACTIVE_TASKS_PER_USER": "1000"}
ROOT = Path(__file__).resolve().parent.parent.parent


async def _load(
    setup: tuple[dict[str, str], str, str, int], commands: Queue[Any], results: Queue[Any]
) -> None:
    """One load process: per target, `clients` clients (setup: targets, token, task id,
    clients); runs each command it is sent."""
    targets, token, task_id, clients = setup
    pools = {name: [env.Client(t, token) for _ in range(clients)] for name, t in targets.items()}
    get = tasks_pb2.GetTaskRequest(task_id=task_id)
    listing = tasks_pb2.ListTasksRequest()

    async def call(name: str, client: env.Client) -> float:
        started = time.monotonic()
        if name.endswith("ListTasks"):
            await client.tasks.ListTasks(listing, metadata=client.metadata, timeout=30)
        else:
            await client.tasks.GetTask(get, metadata=client.metadata, timeout=30)
        return (time.monotonic() - started) * 1000

    async def calls(name: str, client: env.Client, count: int) -> list[float]:
        return [await call(name, client) for _ in range(count)]

    loop = asyncio.get_running_loop()
    try:
        while (command := await loop.run_in_executor(None, commands.get)) is not None:
            name, per_client, start_at = command
            pool = pools[name.split(":")[0]]
            await asyncio.gather(*(call(name, c) for c in pool))  # connected and warm
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            timed = await asyncio.gather(*(calls(name, c, per_client) for c in pool))
            results.put(([t for each in timed for t in each], time.monotonic()))
    finally:
        for pool in pools.values():
            for client in pool:
                await client.close()


def _load_process(*args: Any) -> None:
    asyncio.run(_load(*args))


@contextlib.contextmanager
def _floor_server(auth_target: str) -> Iterator[str]:
    """The do-nothing server, started as its own process; yields its target."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.benchlib.floor_rpc", auth_target],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


class _Load:
    """The load processes, each with its share of the clients for every target."""

    def __init__(self, targets: dict[str, str], token: str, task_id: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._results: Queue[Any] = context.Queue()
        self._commands: list[Queue[Any]] = [context.Queue() for _ in range(PROCESSES)]
        self._processes = [
            context.Process(
                target=_load_process,
                args=((targets, token, task_id, CLIENTS // PROCESSES), q, self._results),
                daemon=True,
            )
            for q in self._commands
        ]
        for process in self._processes:
            process.start()

    def run(self, name: str, per_client: int) -> tuple[float, float]:
        """(calls per second, p99 in ms) of one run of `name` ("target:RPC")."""
        start_at = time.monotonic() + 2.0  # every process connected and warm by then
        for commands in self._commands:
            commands.put((name, per_client, start_at))
        latencies: list[float] = []
        ended = start_at
        for _ in self._processes:
            found, finished = self._results.get(timeout=600)
            latencies += found
            ended = max(ended, finished)
        return len(latencies) / (ended - start_at), percentile(sorted(latencies), 99)

    def close(self) -> None:
        for commands in self._commands:
            commands.put(None)
        for process in self._processes:
            process.join(30)


async def _seed(target: str, token: str) -> str:
    async with env.client(target, token) as seeder:
        ids = [
            (await seeder.create(env.task_request(1, name="seed"))).id for _ in range(SEEDED_TASKS)
        ]
        for task_id in ids:
            await seeder.until_done(task_id)
    return ids[0]


def _measure(
    targets: dict[str, str], token: str, task_id: str, runs: int, per_client: int
) -> list[Result]:
    load = _Load(targets, token, task_id)
    results = []
    parameters = {"clients": CLIENTS, "processes": PROCESSES, "calls": CLIENTS * per_client}
    rates: dict[str, list[float]] = {}
    try:
        for name in ("floor:GetTask", "tasks:GetTask", "tasks:ListTasks"):
            rates[name], p99s = [], []
            for run in range(runs + 1):
                rate, p99 = load.run(name, per_client)
                if run:
                    rates[name].append(rate)
                    p99s.append(p99)
            label = "floor RPC" if name.startswith("floor") else name.split(":")[1]
            results.append(Result.of(f"5 {label} throughput", parameters, "calls/s", rates[name]))
            results.append(Result.of(f"5 {label} p99", parameters, "ms", p99s))
    finally:
        load.close()
    for name in ("tasks:GetTask", "tasks:ListTasks"):
        # Each run against the floor's run of the same number (they ran minutes apart at most).
        fractions = [r / f for r, f in zip(rates[name], rates["floor:GetTask"], strict=True)]
        results.append(
            Result.of(f"5 {name.split(':')[1]} / floor RPC", parameters, "ratio", fractions)
        )
    return results


def run(servers: env.Servers, runs: int, per_client: int) -> list[Result]:
    """Case 5 on a stack with one instant worker (to finish the seeded tasks)."""
    with (
        servers.stack(workers=1, worker_env=env.instant_workers(), tasks_env=TASKS_ENV) as (
            stack,
            _,
        ),
        _floor_server(stack.auth.target) as floor,
    ):
        token = stack.token()
        task_id = env.arun(_seed(stack.tasks.target, token))
        targets = {"tasks": stack.tasks.target, "floor": floor}
        return _measure(targets, token, task_id, runs, per_client)
