"""Images per second through the whole worker pipeline, and its overhead per job.

    python bench/bench_worker.py [--runs 3] [--jobs 12] [--concurrency 1]

Starts a private nats-server (kiln.common.testing), one in-process worker, and publishes
jobs the way the tasks dispatcher does; a job counts when its SUCCEEDED event arrives, so
each figure includes fetch, STARTED/PROGRESS events, render, encode, thumbnail, object
store writes, the result event and the ack.

- procedural provider at 1024x1024 in png, webp and jpeg: images per second per worker.
- instant provider (a 16x16 image, no render work): milliseconds of pipeline per job.

Medians of `--runs` runs, after one warm-up job per configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
import uuid

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from imagegen.app import Rendering
from imagegen.config import ImagegenConfig
from kiln.common import bus, config, jetstream, logging
from kiln.common.testing.nats_server import NatsServer
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2

FORMATS = {
    "png": imagegen_pb2.IMAGE_FORMAT_PNG,
    "webp": imagegen_pb2.IMAGE_FORMAT_WEBP,
    "jpeg": imagegen_pb2.IMAGE_FORMAT_JPEG,
}


class Collector:
    """Counts SUCCEEDED events."""

    def __init__(self) -> None:
        self.succeeded: set[str] = set()
        self.changed = asyncio.Event()

    async def on_event(self, msg: Msg) -> None:
        event = jobs_pb2.SubtaskEvent()
        event.ParseFromString(msg.data)
        if event.kind == jobs_pb2.SUBTASK_EVENT_KIND_SUCCEEDED:
            self.succeeded.add(event.subtask_id)
            self.changed.set()

    async def wait_all(self, ids: set[str]) -> None:
        while not ids <= self.succeeded:
            self.changed.clear()
            await self.changed.wait()


async def run_batch(nc: Client, collector: Collector, count: int, image_format: int) -> float:
    """Seconds from publishing `count` jobs to their last SUCCEEDED event."""
    js = nc.jetstream()
    jobs = []
    for index in range(count):
        job = jobs_pb2.Job(
            subtask_id=str(uuid.uuid4()),
            task_id="bench",
            queue="standard",
            attempt=1,
            prompt=f"a lighthouse on a cliff at dusk, storm {index}",
            width=1024,
            height=1024,
            seed=index,
            format=image_format,  # type: ignore[arg-type]
            ratio="1:1",
        )
        job.create_time.FromDatetime(datetime.datetime.now(datetime.UTC))
        jobs.append(job)
    started = time.perf_counter()
    for job in jobs:
        await js.publish(
            bus.jobs_subject("standard"),
            job.SerializeToString(),
            headers={bus.MSG_ID_HEADER: f"{job.subtask_id}.1"},
        )
    await collector.wait_all({j.subtask_id for j in jobs})
    return time.perf_counter() - started


async def measure(
    url: str, provider: str, image_format: str, *, jobs: int, runs: int, concurrency: int
) -> list[float]:
    """Seconds per batch of `jobs`, for each run."""
    env = {
        "NATS_URL": url,
        "WORKER_QUEUES": "standard",
        "WORKER_CONCURRENCY": str(concurrency),
        "IMAGEGEN_PROVIDER_STANDARD": provider,
        "IMAGEGEN_PROGRESS_INTERVAL_SECONDS": "0.5",
        "LOG_LEVEL": "warning",
    }
    settings = config.load(ImagegenConfig, environ=env, env_file=None)
    nc = await nats.connect(url)
    await jetstream.provision(nc.jetstream(), bus.worker_topology(bus.QUEUES, settings))
    collector = Collector()
    await nc.subscribe(bus.EVENTS_WILDCARD, cb=collector.on_event)
    runtime = await Rendering.start(settings, nc)
    try:
        await run_batch(nc, collector, 1, FORMATS[image_format])  # warm-up
        return [await run_batch(nc, collector, jobs, FORMATS[image_format]) for _ in range(runs)]
    finally:
        await runtime.stop(5)
        await nc.close()


async def main(runs: int, jobs: int, concurrency: int) -> None:
    logging.configure_logging("bench", "warning", "console")
    with NatsServer() as server:
        print(
            f"whole worker pipeline, 1 worker process, concurrency {concurrency}, "
            f"median of {runs} runs of {jobs} jobs"
        )
        print(f"{'provider':<11} {'format':<6} {'images/s':>9} {'ms/image':>9}")
        for image_format in FORMATS:
            times = await measure(
                server.url,
                "procedural",
                image_format,
                jobs=jobs,
                runs=runs,
                concurrency=concurrency,
            )
            per_batch = statistics.median(times)
            print(
                f"{'procedural':<11} {image_format:<6} {jobs / per_batch:>9.2f}"
                f" {per_batch / jobs * 1000:>9.1f}"
            )
        overhead_jobs = jobs * 10
        times = await measure(
            server.url, "instant", "png", jobs=overhead_jobs, runs=runs, concurrency=concurrency
        )
        per_batch = statistics.median(times)
        print(
            f"{'instant':<11} {'png':<6} {overhead_jobs / per_batch:>9.2f}"
            f" {per_batch / overhead_jobs * 1000:>9.1f}   <- pipeline overhead per job"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(main(args.runs, args.jobs, args.concurrency))
