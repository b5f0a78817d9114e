"""Case 5: GetTask and ListTasks throughput and p99 latency with 50 concurrent clients.

Each client has its own channel (its own HTTP/2 connection) and calls in a loop; a run is
`CALLS_PER_CLIENT` calls per client. The user owns `SEEDED_TASKS` finished 1-subtask tasks
(rendered by one instant worker first), so GetTask reads a finished task and ListTasks
returns a full first page (50, the default page size).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from kiln.tasks.v1 import tasks_pb2

from . import env
from .results import Result, percentile

CLIENTS = 50
SEEDED_TASKS = 60
TASKS_ENV = {"TASKS_MAX_ACTIVE_TASKS_PER_USER": "1000"}

Call = Callable[[env.Client], Awaitable[object]]


async def _run(clients: list[env.Client], call: Call, per_client: int) -> tuple[float, float]:
    """(calls per second, p99 in ms) of one run."""
    latencies: list[float] = []

    async def loop(client: env.Client) -> None:
        for _ in range(per_client):
            started = time.perf_counter()
            await call(client)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in clients))
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, percentile(sorted(latencies), 99)


async def _measure(target: str, token: str, runs: int, per_client: int) -> list[Result]:
    async with env.client(target, token) as seeder:
        ids = [
            (await seeder.create(env.task_request(1, name="seed"))).id for _ in range(SEEDED_TASKS)
        ]
        for task_id in ids:
            await seeder.until_done(task_id)
    clients = [env.Client(target, token) for _ in range(CLIENTS)]
    calls: dict[str, Call] = {
        "GetTask": lambda c: c.get(ids[0]),
        "ListTasks": lambda c: c.tasks.ListTasks(
            tasks_pb2.ListTasksRequest(), metadata=c.metadata, timeout=30
        ),
    }
    results = []
    try:
        for name, call in calls.items():
            rates, p99s = [], []
            for run in range(runs + 1):
                rate, p99 = await _run(clients, call, per_client)
                if run:
                    rates.append(rate)
                    p99s.append(p99)
            parameters = {"clients": CLIENTS, "calls": CLIENTS * per_client}
            results.append(Result.of(f"5 {name} throughput", parameters, "calls/s", rates))
            results.append(Result.of(f"5 {name} p99", parameters, "ms", p99s))
    finally:
        for client in clients:
            await client.close()
    return results


def run(servers: env.Servers, runs: int, per_client: int) -> list[Result]:
    """Case 5 on a stack with one instant worker (to finish the seeded tasks)."""
    with servers.stack(workers=1, worker_env=env.instant_workers(), tasks_env=TASKS_ENV) as (
        stack,
        _,
    ):
        token = stack.token()
        return env.arun(_measure(stack.tasks.target, token, runs, per_client))
