"""How fast the tasks service accepts, dispatches and folds work.

Run from the repository root: `.venv/bin/python bench/bench_tasks.py`. It starts its own
nats-server and PostgreSQL (kiln.common.testing) and a real tasks server in-process, then
measures through gRPC:

- CreateTask latency for tasks of 1, 100, 1,000 and 10,000 subtasks (median of 5 after a
  warm-up, dispatcher off so it measures the create alone), and rows written per second
  (a task row, plus one subtask row and one outbox row per subtask);
- the dispatch rate: a 10,000-job backlog published onto the JOBS stream, in jobs/s;
- end to end: 10,000 subtasks dispatched, "rendered" by scripted workers that report
  STARTED and SUCCEEDED for every job, and folded, in subtasks/s.

Target: a 10,000-subtask task accepted in under 1 s on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

import nats
import uvloop
from nats.aio.msg import Msg

from kiln.common import bus, logging
from kiln.common.testing import NatsServer, PostgresServer
from kiln.common.testing.tokens import TestSigner
from kiln.imagegen.v1 import jobs_pb2
from kiln.tasks.v1 import tasks_pb2
from tasks import app
from tasks import testing as h

RUNS = 5
SIZES = (1, 100, 1000, 10_000)


def request_of(size: int) -> tasks_pb2.CreateTaskRequest:
    """A task of `size` subtasks over three variables."""
    shapes = {1: (1, 1, 1), 100: (10, 10, 1), 1000: (10, 10, 10), 10_000: (25, 20, 20)}
    a, b, c = shapes[size]
    return tasks_pb2.CreateTaskRequest(
        task_name=f"bench {size}",
        prompt_template="a {style} photograph of a {animal} in a {place}, golden hour",
        variables={
            "style": tasks_pb2.VariableValues(values=[f"style {i}" for i in range(a)]),
            "animal": tasks_pb2.VariableValues(values=[f"animal {i}" for i in range(b)]),
            "place": tasks_pb2.VariableValues(values=[f"place {i}" for i in range(c)]),
        },
        settings=tasks_pb2.TaskSettings(ratio="16:9"),
    )


async def bench_create(server: h.Running) -> None:
    """CreateTask latency by size."""
    client = server.client(f"bench-{uuid.uuid4().hex[:6]}", role="admin")
    print("CreateTask (dispatcher off), median of 5 after a warm-up:")
    print(f"  {'subtasks':>8}  {'median ms':>10}  {'min ms':>8}  {'rows/s':>10}")
    for size in SIZES:
        await client.tasks.CreateTask(request_of(size))
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            response = await client.tasks.CreateTask(request_of(size))
            times.append(time.perf_counter() - started)
            assert response.task.total_images == size
        median = statistics.median(times)
        rows = 1 + 2 * size
        fastest = min(times) * 1000
        print(f"  {size:>8}  {median * 1000:>10.1f}  {fastest:>8.1f}  {rows / median:>10.0f}")


async def bench_dispatch(server: h.Running, nats_url: str) -> None:
    """Jobs/s from a 10,000-row outbox onto the stream."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.purge_stream(bus.JOBS_STREAM)
    client = server.client("dispatch-bench")
    await client.tasks.CreateTask(request_of(10_000))
    started = time.perf_counter()
    server.app.dispatcher.wake()
    dispatch_task = asyncio.create_task(server.app.dispatcher.run())
    while (await js.stream_info(bus.JOBS_STREAM)).state.messages < 10_000:  # noqa: ASYNC110 - polling the broker, not a local flag
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    dispatch_task.cancel()
    await asyncio.gather(dispatch_task, return_exceptions=True)
    print(f"Dispatch: 10,000 jobs onto JOBS in {elapsed:.2f} s = {10_000 / elapsed:,.0f} jobs/s")
    await js.purge_stream(bus.JOBS_STREAM)
    await nc.close()


async def _worker(nats_url: str, stop: asyncio.Event, reported: list[float]) -> None:
    fake = await h.FakeWorker.connect(nats_url)

    async def render(message: Msg, job: jobs_pb2.Job) -> None:
        await fake.event(job, h.K.SUBTASK_EVENT_KIND_STARTED)
        result = jobs_pb2.JobResult(object_name=f"tasks/{job.task_id}/{job.subtask_id}.png")
        result.render_duration.FromMilliseconds(10)
        await fake.event(job, h.K.SUBTASK_EVENT_KIND_SUCCEEDED, result=result)
        await message.ack()
        reported.append(time.perf_counter())

    try:
        while not stop.is_set():
            jobs = await fake.fetch(250, wait=0.5)
            await asyncio.gather(*(render(m, j) for m, j in jobs))
    finally:
        await fake.close()


async def bench_end_to_end(server: h.Running, nats_url: str) -> None:
    """10,000 subtasks from CreateTask to SUCCEEDED with instant scripted workers."""
    stop = asyncio.Event()
    reported: list[float] = []
    workers = [asyncio.create_task(_worker(nats_url, stop, reported)) for _ in range(2)]
    await asyncio.sleep(0.5)
    client = server.client("e2e-bench")
    started = time.perf_counter()
    task = (await client.tasks.CreateTask(request_of(10_000))).task
    server.app.dispatcher.wake()
    while True:
        got = (await client.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id=task.id))).task
        if got.all_subtasks_completed:
            break
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*workers, return_exceptions=True)
    print(
        f"End to end: 10,000 subtasks created, dispatched, reported and folded in "
        f"{elapsed:.2f} s = {10_000 / elapsed:,.0f} subtasks/s "
        f"(state {tasks_pb2.TaskState.Name(got.state)}, succeeded {got.succeeded_count}; "
        f"the scripted workers had reported the last job after {max(reported) - started:.2f} s)"
    )


async def _fresh(
    postgres: PostgresServer, nats_url: str, signer: TestSigner, **overrides: str
) -> h.Running:
    """A tasks server on a new database, with an empty JOBS stream."""
    url = postgres.create_database(f"bench_{uuid.uuid4().hex[:8]}")
    settings = {
        "TASKS_MAX_ACTIVE_TASKS_PER_USER": "1000",
        "TASKS_DISPATCH_WINDOW": "100000",
        "DB_POOL_SIZE": "20",
        **overrides,
    }
    cfg = h.make_config(url, nats_url, **settings)
    app.migrate(cfg)
    server = await h.start(cfg, signer)
    await server.app.nc.jetstream().purge_stream(bus.JOBS_STREAM)
    return server


async def main() -> None:
    """Starts the servers and runs each benchmark."""
    logging.configure_logging("bench", "warning", "console")
    signer = TestSigner()
    with NatsServer() as nats_server, PostgresServer() as postgres:
        server = await _fresh(postgres, nats_server.url, signer, TASKS_DISPATCH_ENABLED="false")
        try:
            await bench_create(server)
        finally:
            await h.stop(server)
        server = await _fresh(postgres, nats_server.url, signer, TASKS_DISPATCH_ENABLED="false")
        try:
            await asyncio.wait_for(bench_dispatch(server, nats_server.url), timeout=120)
        finally:
            await h.stop(server)
        server = await _fresh(postgres, nats_server.url, signer, TASKS_DISPATCH_WINDOW="5000")
        try:
            await asyncio.wait_for(bench_end_to_end(server, nats_server.url), timeout=180)
        finally:
            await h.stop(server)


if __name__ == "__main__":
    uvloop.run(main())
