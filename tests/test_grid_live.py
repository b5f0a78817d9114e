"""The grid of a task that real workers render: at every moment polled, its counts equal
the states the subtask listing shows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks import testing as h

RENDERS = {
    "WORKER_QUEUES": "standard", "IMAGEGEN_PROVIDER_STANDARD": "instant",
    "WORKER_CONCURRENCY": "2", "IMAGEGEN_PROVIDER_OPTIONS_STANDARD": json.dumps({"delay": 0.3}),
}  # fmt: skip


@pytest.fixture
def slow_stack(nats_url: str, database_url: str, tmp_path: Path) -> Iterator[KilnStack]:
    """auth + tasks + one worker with 2 slots rendering 0.3 s per image."""
    kiln = KilnStack.start(nats_url, database_url, tmp_path, worker_env=RENDERS)
    try:
        yield kiln
    finally:
        kiln.close()


@pytest.mark.timeout(180)
def test_grid_matches_the_subtasks_while_workers_render(slow_stack: KilnStack) -> None:
    """A 12-subtask task rendered by a real worker (2 at a time, 0.3 s each): every time
    the grid, the listing and the grid again agree (nothing moved in between), the grid
    equals the listing's states per value, per style x light cell and in total, and its
    total equals the task's counters; this holds at several different moments of the run
    and at the end."""
    metadata = (("authorization", f"Bearer {slow_stack.token()}"),)
    with grpc.insecure_channel(slow_stack.tasks.target) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        request = tasks_pb2.CreateTaskRequest(
            task_name="live grid", prompt_template="{style} art in {light}",
            images_per_combination=2,
        )  # fmt: skip
        request.variables["style"].values.extend(["anime", "oil", "watercolor"])
        request.variables["light"].values.extend(["day", "night"])
        task = stub.CreateTask(request, metadata=metadata, timeout=30).task
        grid_request = tasks_pb2.GetTaskGridRequest(
            task_id=task.id, row_variable="style", column_variable="light"
        )
        moments: set[tuple[tuple[str, str, str, int], ...]] = set()
        finished = False
        while not finished:
            before = stub.GetTaskGrid(grid_request, metadata=metadata, timeout=30).grid
            listing = stub.ListSubtasks(
                tasks_pb2.ListSubtasksRequest(task_id=task.id, page_size=100),
                metadata=metadata,
                timeout=30,
            ).subtasks
            got = stub.GetTask(
                tasks_pb2.GetTaskRequest(task_id=task.id), metadata=metadata, timeout=30
            ).task
            after = stub.GetTaskGrid(grid_request, metadata=metadata, timeout=30).grid
            if before != after or after.version != got.version:
                continue  # something moved during the read: look again
            tally = h.tally_grid(after)
            assert tally == h.tally_subtasks(listing, ("style", "light"))
            total = after.total
            assert (total.total, total.succeeded, total.failed, total.running) == (
                got.total_images, got.succeeded_count, got.failed_count, got.running_count,
            )  # fmt: skip
            moments.add(tuple(sorted((*k, v) for k, v in tally.items())))
            finished = got.all_subtasks_completed
        assert got.state == tasks_pb2.TASK_STATE_SUCCEEDED
        assert len(moments) >= 3
