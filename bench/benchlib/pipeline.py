"""Cases 2, 3 and 6: subtasks per second from CreateTask until the task reports succeeded,
and how long another owner's 1-subtask task takes while a big task runs.

"Reports succeeded" is the end of a WatchTask stream (snapshots only): the service ends it
once the task is terminal with every subtask ended, so the figure includes dispatch,
rendering, events, folding and the notification of the watcher.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping

from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2

from . import busops, cpu, env
from .results import Result


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """One configuration of the pipeline case."""

    case: str
    provider: str
    subtasks: int
    warmup_subtasks: int
    worker_env: Mapping[str, str]
    ratio: str = "16:9"
    output_format: int = tasks_pb2.OUTPUT_FORMAT_PNG
    target: str = ""

    def request(self, size: int) -> tasks_pb2.CreateTaskRequest:
        return env.task_request(
            size, name=self.provider, ratio=self.ratio, output_format=self.output_format
        )


@dataclasses.dataclass
class _Measured:
    rates: list[float] = dataclasses.field(default_factory=list)
    messages: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """Bus messages per job of each run (`busops`)."""
    cpu_ms: list[dict[str, float]] = dataclasses.field(default_factory=list)
    """CPU milliseconds per job of each process of each run (`cpu`)."""


async def _throughput(
    target: str,
    token: str,
    pipeline: Pipeline,
    runs: int,
    *,
    monitor_url: str,
    processes: cpu.Processes,
) -> _Measured:
    measured = _Measured()
    async with env.client(target, token) as client:
        for run in range(runs + 1):
            size = pipeline.warmup_subtasks if run == 0 else pipeline.subtasks
            before, cpu_before = busops.snapshot(monitor_url), cpu.snapshot(processes)
            started = time.perf_counter()
            task = await client.create(pipeline.request(size))
            final = await client.until_done(task.id)
            elapsed = time.perf_counter() - started
            counted = busops.snapshot(monitor_url).minus(before)
            used = cpu.per_job(cpu_before, cpu.snapshot(processes), size)
            if final.state != tasks_pb2.TASK_STATE_SUCCEEDED:
                raise RuntimeError(f"task ended {tasks_pb2.TaskState.Name(final.state)}")
            if run:
                measured.rates.append(size / elapsed)
                measured.messages.append(busops.per_job(counted, size))
                measured.cpu_ms.append(used)
    return measured


def _processes(stack: KilnStack, nats_pid: int | None, postgres_pid: int | None) -> cpu.Processes:
    def pids() -> dict[str, list[int]]:
        workers = [w.process.pid for w in stack.workers if w.process is not None]
        return {
            "tasks": [stack.tasks.process.pid] if stack.tasks.process is not None else [],
            "imagegen (all)": workers,
            "nats-server": [nats_pid] if nats_pid is not None else [],
            "postgres": cpu.with_children(postgres_pid),
        }

    return pids


def throughput(servers: env.Servers, pipeline: Pipeline, workers: int, runs: int) -> list[Result]:
    """One pipeline configuration with `workers` worker processes, and the bus messages per
    job it cost (all of them; with 2 workers also each role's sent and received)."""
    with servers.stack(workers=workers, worker_env=pipeline.worker_env) as (stack, nats_url):
        token = stack.token()
        processes = _processes(stack, servers.nats_pids[nats_url], servers.postgres.pid)
        measured = env.arun(
            _throughput(
                stack.tasks.target,
                token,
                pipeline,
                runs,
                monitor_url=servers.monitors[nats_url],
                processes=processes,
            )
        )
    rates, messages = measured.rates, measured.messages
    parameters = {
        "provider": pipeline.provider,
        "workers": workers,
        "concurrency": pipeline.worker_env["WORKER_CONCURRENCY"],
        "subtasks": pipeline.subtasks,
    }
    if pipeline.provider == "procedural":
        parameters["size"] = "1024x1024 webp"
    target = pipeline.target if workers == 2 else ""
    results = [Result.of(pipeline.case, parameters, "subtasks/s", rates, target=target)]
    for kind in messages[0] if workers == 2 else ("all",):
        results.append(
            Result.of(
                f"{pipeline.case} bus msgs/job",
                {"workers": workers, "messages": kind},
                "msgs/job",
                [figures[kind] for figures in messages],
            )
        )
    for part in measured.cpu_ms[0]:
        results.append(
            Result.of(
                f"{pipeline.case} CPU ms/job",
                {"workers": workers, "process": part},
                "ms/job",
                [figures[part] for figures in measured.cpu_ms],
            )
        )
    return results


def instant(subtasks: int) -> Pipeline:
    """Case 2: the instant provider."""
    return Pipeline(
        case="2 pipeline",
        provider="instant",
        subtasks=subtasks,
        warmup_subtasks=1000,
        worker_env=env.instant_workers(),
        target=">= 2000 (2 workers)",
    )


def procedural(subtasks: int) -> Pipeline:
    """Case 3: the procedural provider at 1024x1024 WebP."""
    return Pipeline(
        case="3 pipeline",
        provider="procedural",
        subtasks=subtasks,
        warmup_subtasks=20,
        worker_env=env.procedural_workers(),
        ratio="1:1",
        output_format=tasks_pb2.OUTPUT_FORMAT_WEBP,
    )


FAIRNESS_HEAD_START = 500
"""Subtasks of the big task that must have succeeded before the small task is created."""


SLOW_RENDER = 0.25
"""Seconds per image of case 6's second part: one worker with 2 slots renders 8 images/s."""


async def _fairness(
    target: str,
    big_token: str,
    small_token: str,
    runs: int,
    *,
    big_size: int = 10_000,
    head_start: int = FAIRNESS_HEAD_START,
) -> list[float]:
    waits = []
    async with env.client(target, big_token) as big, env.client(target, small_token) as small:
        for run in range(runs + 1):
            hog = await big.create(env.task_request(big_size, name="hog"))
            while (await big.get(hog.id)).succeeded_count < head_start:  # noqa: ASYNC110 - polling the service under test
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            task = await small.create(env.task_request(1, name="small"))
            final = await small.until_done(task.id)
            waited = time.perf_counter() - started
            if final.state != tasks_pb2.TASK_STATE_SUCCEEDED:
                raise RuntimeError(f"small task ended {tasks_pb2.TaskState.Name(final.state)}")
            still_running = (await big.get(hog.id)).state == tasks_pb2.TASK_STATE_RUNNING
            await big.cancel(hog.id)
            await big.until_done(hog.id)
            if not still_running:
                raise RuntimeError("the big task finished before the small one: no contention")
            if run:
                waits.append(waited)
    return waits


def fairness(servers: env.Servers, runs: int) -> list[Result]:
    """Case 6 with 2 instant workers and the default dispatch window."""
    with servers.stack(workers=2, worker_env=env.instant_workers()) as (stack, _):
        big, small = stack.token(), stack.token()
        waits = env.arun(_fairness(stack.tasks.target, big, small, runs))
    parameters = {"big_task": 10_000, "provider": "instant", "workers": 2, "window": "default"}
    results = [Result.of("6 other owner's 1 subtask", parameters, "s", waits, target="<= 5 s")]
    # Renders that take time: the order must still be decided when the small task comes.
    slow = {**env.instant_workers(2), "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps(
        {"delay": SLOW_RENDER})}  # fmt: skip
    with servers.stack(workers=1, worker_env=slow) as (stack, _):
        big, small = stack.token(), stack.token()
        waits = env.arun(
            _fairness(stack.tasks.target, big, small, runs, big_size=1000, head_start=16)
        )
    parameters = {"big_task": 1000, "provider": f"instant {SLOW_RENDER} s", "workers": 1,
                  "slots": 2, "window": "default"}  # fmt: skip
    results.append(
        Result.of("6 other owner's 1 subtask, slow", parameters, "s", waits, target="<= 2 s")
    )
    return results
