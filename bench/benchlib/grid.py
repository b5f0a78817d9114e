"""Case 8: GetTaskGrid latency on a 10,000-subtask task, as a client polling it sees it.

The task is 25 x 20 x 20 values of three variables (every subtask its own combination,
the most groups the grid's query can meet) with a two-way table of the first two. One
worker renders it meanwhile at about 80 images/s (instant provider, 0.05 s per image, 4
slots), so the states move while the grid is read and the task is still running at the
end; each run is `calls` sequential GetTaskGrid calls on one channel and gives that run's
median and p99 latency. The task is cancelled at the end.
"""

from __future__ import annotations

import json
import statistics
import time

from kiln.tasks.v1 import tasks_pb2

from . import env
from .results import Result, percentile

SIZE = 10_000
WORKER = {
    **env.instant_workers(4),
    "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps({"delay": 0.05}),
}


async def _measure(target: str, token: str, runs: int, calls: int) -> list[Result]:
    async with env.client(target, token) as client:
        task = await client.create(env.task_request(SIZE, name="grid"))
        request = tasks_pb2.GetTaskGridRequest(
            task_id=task.id, row_variable="style", column_variable="animal"
        )
        medians, p99s = [], []
        for run in range(runs + 1):
            latencies = []
            for _ in range(calls):
                started = time.perf_counter()
                response = await client.tasks.GetTaskGrid(
                    request, metadata=client.metadata, timeout=30
                )
                latencies.append((time.perf_counter() - started) * 1000)
                if response.grid.total.total != SIZE:
                    raise RuntimeError(f"the grid counts {response.grid.total.total} subtasks")
            if run:  # the first run warms up
                latencies.sort()
                medians.append(statistics.median(latencies))
                p99s.append(percentile(latencies, 99))
        done = await client.get(task.id)
        if not done.all_subtasks_completed:
            await client.cancel(task.id)
    parameters = {"subtasks": SIZE, "table": "25x20", "calls": calls, "renders": "80/s"}
    note = f"{done.succeeded_count} of {SIZE} subtasks had succeeded at the end"
    return [
        Result.of("8 grid read p50", parameters, "ms", medians, note=note),
        Result.of("8 grid read p99", parameters, "ms", p99s, note=note),
    ]


def run(servers: env.Servers, runs: int, calls: int) -> list[Result]:
    """Case 8 on a stack with one instant worker rendering the task while it is read."""
    with servers.stack(workers=1, worker_env=WORKER) as (stack, _):
        return env.arun(_measure(stack.tasks.target, stack.token(), runs, calls))
