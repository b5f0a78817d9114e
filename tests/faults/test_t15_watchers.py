"""T15: 200 concurrent WatchTask streams, then every client cancels."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import grpc
import pytest
from faults import checks, harness
from faults.harness import Fault

from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

WATCHERS = 200
TASKS = 20
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _subscriptions(fault: Fault) -> int:
    """Subscriptions of the tasks service's NATS connection (the server's monitoring
    endpoint; server-wide counts also move with JetStream's internal bookkeeping)."""
    with _NO_PROXY.open(f"{fault.nats.monitor_url}/connz?subs=1", timeout=2) as response:
        connections = json.load(response)["connections"]
    return sum(
        len(c.get("subscriptions_list", [])) for c in connections if c.get("name") == "tasks"
    )


async def _round(fault: Fault, target: str, token: str, task_ids: list[str]) -> float:
    """Opens WATCHERS streams, waits for every snapshot, cancels them all; returns the
    seconds until the server's subscriptions are back to what they were before."""
    before = await asyncio.to_thread(_subscriptions, fault)
    metadata = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        calls = [
            stub.WatchTask(
                tasks_pb2.WatchTaskRequest(task_id=task_ids[i % TASKS]), metadata=metadata
            )
            for i in range(WATCHERS)
        ]
        snapshots = await asyncio.gather(*(call.read() for call in calls))
        assert all(s.snapshot for s in snapshots)
        during = await asyncio.to_thread(_subscriptions, fault)
        assert during > before, "watched tasks hold subscriptions"
        for call in calls:
            call.cancel()
    return await asyncio.to_thread(
        checks.wait_until,
        lambda: _subscriptions(fault) <= before,
        within=5,
        what="subscriptions back to baseline",
        every=0.02,
    )


@pytest.mark.long
@pytest.mark.timeout(180)
async def test_cancelled_watchers_release_everything(fault: Fault) -> None:
    """200 streams over 20 waiting tasks (one NATS subscription per watched task), then all
    200 clients cancel: the subscriptions are back to baseline within 1 s, and the tasks
    process's memory after a second identical round is within 10 % of after the first
    (what a round leaves behind would show up as growth)."""
    await asyncio.to_thread(fault.start, workers=0)
    client = await asyncio.to_thread(fault.client)
    task_ids = [(await asyncio.to_thread(client.create, 1)).id for _ in range(TASKS)]
    tasks = fault.kiln.tasks
    warm = await _round(fault, tasks.target, client.token, task_ids)
    await asyncio.sleep(1.0)
    baseline = harness.rss_bytes(tasks)
    released = await _round(fault, tasks.target, client.token, task_ids)
    await asyncio.sleep(1.0)
    after = harness.rss_bytes(tasks)
    # RELIABILITY T15: back to baseline within 1 s of the clients cancelling.
    assert max(warm, released) <= 1.0, (warm, released)
    assert after <= baseline * 1.10, (baseline, after)
    assert tasks.health() is not None
    harness.record(
        "T15", watchers=WATCHERS, subscriptions_released_seconds=round(released, 3),
        tasks_rss_mib_after_round1=round(baseline / 2**20, 1),
        tasks_rss_mib_after_round2=round(after / 2**20, 1),
    )  # fmt: skip
