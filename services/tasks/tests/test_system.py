"""SystemService: stats, queue stats, workers, pause and resume; admin only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from kiln.common import bus
from kiln.imagegen.v1 import jobs_pb2
from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


async def test_system_service_is_admin_only(server: h.Running) -> None:
    """Every SystemService RPC is PERMISSION_DENIED for a non-admin, even with bad input."""
    alice = server.client("alice")
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: alice.system.GetSystemStats(tasks_pb2.GetSystemStatsRequest()),
        lambda: alice.system.GetQueueStats(tasks_pb2.GetQueueStatsRequest()),
        lambda: alice.system.ListWorkers(tasks_pb2.ListWorkersRequest()),
        lambda: alice.system.PauseQueue(tasks_pb2.PauseQueueRequest()),
        lambda: alice.system.ResumeQueue(
            tasks_pb2.ResumeQueueRequest(queue=tasks_pb2.QUEUE_STANDARD)
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call()
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_stats_queues_workers_and_pause(server: h.Running, worker: h.FakeWorker) -> None:
    """Stats count tasks and subtasks by state and recent images; queue stats read the
    worker consumer; ListWorkers reads heartbeats; Pause/Resume write the queue flag."""
    admin = server.client("root", role="admin")
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c")))).task
    [(message, job)] = await worker.fetch_exactly(1)
    await worker.succeed(message, job)

    async def one_done() -> bool:
        return (await h.get_task(alice, task.id)).succeeded_count == 1

    await h.wait_for(one_done, what="one image")
    stats = await admin.system.GetSystemStats(tasks_pb2.GetSystemStatsRequest())
    tasks_by = {s.state: s.count for s in stats.tasks_by_state}
    subtasks_by = {s.state: s.count for s in stats.subtasks_by_state}
    assert tasks_by["running"] == 1
    assert subtasks_by["succeeded"] == 1 and subtasks_by["queued"] == 2
    assert stats.images_last_minute == 1 and stats.outbox_backlog == 0
    queues = await admin.system.GetQueueStats(tasks_pb2.GetQueueStatsRequest())
    standard = next(q for q in queues.queues if q.queue == tasks_pb2.QUEUE_STANDARD)
    assert standard.pending == 2 and standard.waiting_dispatch == 0 and not standard.paused
    assert len(queues.queues) == 3

    beat = jobs_pb2.WorkerHeartbeat(
        worker_id="w-9", queues=["standard"], concurrency=4, hostname="h"
    )
    beat.time.GetCurrentTime()
    kv = await worker.js.key_value(bus.WORKERS_BUCKET)
    await kv.put("w-9", beat.SerializeToString())
    workers = await admin.system.ListWorkers(tasks_pb2.ListWorkersRequest())
    assert [w.worker_id for w in workers.workers] == ["w-9"]
    assert list(workers.workers[0].queues) == [tasks_pb2.QUEUE_STANDARD]

    paused = await admin.system.PauseQueue(
        tasks_pb2.PauseQueueRequest(queue=tasks_pb2.QUEUE_LUMINA)
    )
    assert paused.queue.paused
    state = await worker.js.key_value(bus.QUEUE_STATE_BUCKET)
    assert (await state.get("lumina")).value == b"paused"
    resumed = await admin.system.ResumeQueue(
        tasks_pb2.ResumeQueueRequest(queue=tasks_pb2.QUEUE_LUMINA)
    )
    assert not resumed.queue.paused
    assert (await state.get("lumina")).value == b"active"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await admin.system.PauseQueue(tasks_pb2.PauseQueueRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
