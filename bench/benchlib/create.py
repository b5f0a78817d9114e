"""Case 1: CreateTask latency by size, and how long until a big task's jobs are all on the
JOBS stream.

No workers run, so published jobs stay on the stream and its message count tells how many
were dispatched; the dispatch window is set far above what the case creates
(`TASKS_DISPATCH_WINDOW`, and `TASKS_DISPATCH_UNSERVED_WINDOW` for a queue without live
workers), so the window never holds jobs back. After every CreateTask the
case waits until that task's jobs are all on the stream, so each call meets an idle
service, and the 10,000-subtask runs give the dispatch time too.
"""

from __future__ import annotations

import asyncio
import time

import nats

from kiln.common import bus

from . import env
from .results import Result

SIZES = (1, 100, 1000, 10_000)
TASKS_ENV = {
    "TASKS_DISPATCH_WINDOW": "10000000",
    "TASKS_DISPATCH_UNSERVED_WINDOW": "10000000",  # no workers in this case
    "TASKS_MAX_ACTIVE_TASKS_PER_USER": "100000",
}
_POLL = 0.005


async def _on_stream(nats_url: str, count: int, limit: float = 120) -> None:
    """Polls the JOBS stream's info until it holds `count` messages."""
    connection = await nats.connect(nats_url)
    try:
        js = connection.jetstream()
        deadline = time.monotonic() + limit
        while (await js.stream_info(bus.JOBS_STREAM)).state.messages < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} jobs on {bus.JOBS_STREAM}")
            await asyncio.sleep(_POLL)
    finally:
        await connection.close()


async def measure(target: str, token: str, nats_url: str, runs: int) -> list[Result]:
    """Warm-up plus `runs` CreateTask calls per size."""
    results = []
    on_stream = 0
    async with env.client(target, token) as client:
        for size in SIZES:
            latencies, dispatch = [], []
            for run in range(runs + 1):
                started = time.perf_counter()
                task = await client.create(env.task_request(size))
                returned = time.perf_counter()
                assert task.total_images == size
                on_stream += size
                await _on_stream(nats_url, on_stream)
                if run == 0:
                    continue  # warm-up
                latencies.append((returned - started) * 1000)
                dispatch.append(time.perf_counter() - returned)
            target_text = "< 1000 ms" if size == 10_000 else ""
            results.append(
                Result.of("1 CreateTask", {"subtasks": size}, "ms", latencies, target=target_text)
            )
            if size == 10_000:
                results.append(
                    Result.of(
                        "1 jobs on stream after return",
                        {"subtasks": size, "workers": 0, "window": "1e7"},
                        "s",
                        dispatch,
                        target="<= 2 s",
                    )
                )
    return results


def run(servers: env.Servers, runs: int) -> list[Result]:
    """Case 1 on its own stack (no workers)."""
    with servers.stack(tasks_env=TASKS_ENV) as (stack, nats_url):
        token = stack.token()
        return env.arun(measure(stack.tasks.target, token, nats_url, runs))
