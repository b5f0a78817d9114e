"""The broker and database floor: what raw JetStream and a PostgreSQL COPY do on this
machine, so the pipeline's rate can be read as a fraction of it."""

from __future__ import annotations

import asyncio
import time

import nats
import psycopg
from nats.js import api

from . import env
from .results import Result


async def jetstream_round_trip(nats_url: str, count: int, payload_bytes: int = 200) -> float:
    """Seconds to publish `count` messages (acks awaited in windows) and consume them all
    from a durable pull consumer with acks, as the job path does."""
    client = await nats.connect(nats_url)
    try:
        js = client.jetstream()
        stream = f"FLOOR_{time.monotonic_ns()}"
        await js.add_stream(
            api.StreamConfig(
                name=stream, subjects=[f"{stream}.jobs"], retention=api.RetentionPolicy.WORK_QUEUE
            )
        )
        await js.add_consumer(
            stream,
            api.ConsumerConfig(
                durable_name="floor", ack_policy=api.AckPolicy.EXPLICIT, max_ack_pending=20_000
            ),
        )
        payload = b"x" * payload_bytes
        started = time.perf_counter()
        window = 500
        for first in range(0, count, window):
            await asyncio.gather(
                *(
                    js.publish(f"{stream}.jobs", payload, headers={"Nats-Msg-Id": f"{stream}-{i}"})
                    for i in range(first, min(count, first + window))
                )
            )
        subscription = await js.pull_subscribe_bind("floor", stream=stream)
        consumed = 0
        while consumed < count:
            messages = await subscription.fetch(min(1000, count - consumed), timeout=10)
            await asyncio.gather(*(m.ack() for m in messages))
            consumed += len(messages)
        elapsed = time.perf_counter() - started
        await js.delete_stream(stream)
        return elapsed
    finally:
        await client.close()


def postgres_copy(database_url: str, count: int) -> float:
    """Seconds to COPY `count` rows shaped like subtasks into a fresh table and commit."""
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "CREATE TEMP TABLE floor_rows (id uuid, task_id uuid, idx int, prompt text, "
            "seed bigint, state text)"
        )
        rows = [
            (
                f"00000000-0000-4000-8000-{i:012d}",
                "00000000-0000-4000-8000-000000000000",
                i,
                f"a red fox number {i}",
                i,
                "pending",
            )
            for i in range(count)
        ]
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(
                "COPY floor_rows (id, task_id, idx, prompt, seed, state) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return time.perf_counter() - started


def measure(
    servers: env.Servers, count: int, runs: int, pipeline_rate: float | None
) -> list[Result]:
    """Case 7: both floors (`runs` times after a warm-up) on a fresh nats-server and a fresh
    database of the same PostgreSQL, and the pipeline's rate (case 2, 2 workers) as a
    fraction of each when that case ran."""
    database = servers.database()
    with servers.nats() as nats_url:
        jetstream = [
            count / env.arun(jetstream_round_trip(nats_url, count)) for _ in range(runs + 1)
        ]
    copy = [count / postgres_copy(database, count) for _ in range(runs + 1)]
    parameters = {"messages": count}
    results = [
        Result.of("7 floor JetStream pub+consume", parameters, "msgs/s", jetstream[1:]),
        Result.of("7 floor PostgreSQL COPY", {"rows": count}, "rows/s", copy[1:]),
    ]
    if pipeline_rate is not None:
        for name, rates in (("JetStream", jetstream[1:]), ("COPY", copy[1:])):
            results.append(
                Result.of(
                    f"7 pipeline / {name} floor",
                    {"pipeline": f"{pipeline_rate:.0f}/s"},
                    "fraction",
                    [pipeline_rate / rate for rate in rates],
                )
            )
    return results
