"""Reused results through the real processes: a task with `reuse_results` is served with
copies of already stored images of the same render inputs instead of renders, within one
owner, across owners only from tasks that `share_results`, and renders again when the
stored image is gone.

Renders are counted on the worker's own metrics (`kiln_imagegen_render_seconds_count`
counts only jobs that rendered, `kiln_imagegen_results_reused_total` those served by a
copy); image hashes are of the bytes GetImage returns. Prompts carry a fresh word per test:
the session's NATS, and with it the render index, outlives each test's stack.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
import uuid
from collections.abc import Iterator

import grpc
import nats
import pytest
from load.measure import metric_sum

from kiln.common import bus
from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

RENDERS = "kiln_imagegen_render_seconds_count"
REUSED = "kiln_imagegen_results_reused_total"
LOOKUPS = "kiln_imagegen_reuse_lookups_total"


@dataclasses.dataclass
class Finished:
    """A task run to its end: its last snapshot, subtasks in index order, image hashes."""

    task: tasks_pb2.Task
    subtasks: list[tasks_pb2.Subtask]
    hashes: list[str]


class Client:
    """One user's TaskService calls."""

    def __init__(self, stub: tasks_pb2_grpc.TaskServiceStub, token: str) -> None:
        self.stub = stub
        self.metadata = (("authorization", f"Bearer {token}"),)

    def run(self, word: str, *, reuse: bool = False, share: bool = False) -> Finished:
        """Creates the test's 4-image task (polished, fixed seed) and waits for its end."""
        request = tasks_pb2.CreateTaskRequest(
            task_name="reuse",
            prompt_template=f"a {{color}} {{shape}} called {word}",
            settings=tasks_pb2.TaskSettings(
                ratio="1:1",
                seed=11,
                use_polish=True,
                negative_prompt="blur",
                output_format=tasks_pb2.OUTPUT_FORMAT_WEBP,
                reuse_results=reuse,
                share_results=share,
            ),
        )
        request.variables["color"].values.extend(["red", "blue"])
        request.variables["shape"].values.extend(["cube", "sphere"])
        task = self.stub.CreateTask(request, metadata=self.metadata, timeout=30).task
        assert (task.settings.reuse_results, task.settings.share_results) == (reuse, share)
        last = task
        watch = tasks_pb2.WatchTaskRequest(task_id=task.id)
        for update in self.stub.WatchTask(watch, metadata=self.metadata, timeout=120):
            last = update.task
        assert last.state == tasks_pb2.TASK_STATE_SUCCEEDED
        subtasks = list(
            self.stub.ListSubtasks(
                tasks_pb2.ListSubtasksRequest(task_id=task.id), metadata=self.metadata, timeout=30
            ).subtasks
        )
        return Finished(last, subtasks, [self.image_hash(s) for s in subtasks])

    def image_hash(self, subtask: tasks_pb2.Subtask) -> str:
        """SHA-256 of the image bytes GetImage streams, checked against its metadata."""
        parts = list(
            self.stub.GetImage(
                tasks_pb2.GetImageRequest(subtask_id=subtask.id), metadata=self.metadata, timeout=30
            )
        )
        digest = hashlib.sha256(b"".join(p.chunk for p in parts[1:])).hexdigest()
        assert digest == parts[0].metadata.sha256 == subtask.result.sha256
        return digest


class WorkerCounts:
    """The worker's render and reuse counters, read once the jobs behind them are counted
    (the worker counts a job right after acknowledging it, so just after the task ends)."""

    def __init__(self, stack: KilnStack) -> None:
        self.port = stack.workers[0].metrics_port

    def settled(self, jobs: int, within: float = 20.0) -> tuple[int, int]:
        """(renders, reuses) once their sum reaches `jobs`."""
        deadline = time.monotonic() + within
        while True:
            renders = int(metric_sum(self.port, RENDERS, queue="standard"))
            reused = int(metric_sum(self.port, REUSED, queue="standard"))
            if renders + reused >= jobs:
                return renders, reused
            assert time.monotonic() < deadline, f"only {renders + reused} of {jobs} jobs counted"
            time.sleep(0.1)

    def lookups(self, outcome: str) -> int:
        """Render-index lookups with this outcome so far."""
        return int(metric_sum(self.port, LOOKUPS, queue="standard", outcome=outcome))


def _word() -> str:
    return f"w{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tasks_stub(stack: KilnStack) -> Iterator[tasks_pb2_grpc.TaskServiceStub]:
    """A TaskService stub on the stack's tasks server."""
    channel = grpc.insecure_channel(stack.tasks.target)
    yield tasks_pb2_grpc.TaskServiceStub(channel)
    channel.close()


@pytest.mark.timeout(240)
def test_a_repeated_task_with_reuse_renders_nothing_and_keeps_the_hashes(
    stack: KilnStack, tasks_stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    """The same 4-image task run twice with reuse_results: the first renders 4 images, the
    second none; its subtasks name the first task's as their source, index by index, and
    their images have the same SHA-256; the second task's settings say it reused."""
    owner, word, counts = Client(tasks_stub, stack.token()), _word(), WorkerCounts(stack)
    first = owner.run(word, reuse=True)
    assert counts.settled(4) == (4, 0)
    assert all(s.reused_from == "" for s in first.subtasks)

    second = owner.run(word, reuse=True)
    assert counts.settled(8) == (4, 4)
    assert [s.reused_from for s in second.subtasks] == [s.id for s in first.subtasks]
    assert second.hashes == first.hashes
    assert [s.polished_prompt for s in second.subtasks] == [
        s.polished_prompt for s in first.subtasks
    ]
    assert {s.result.object_name.split("/")[1] for s in second.subtasks} == {second.task.id}


@pytest.mark.timeout(240)
def test_a_task_without_reuse_renders_again(
    stack: KilnStack, tasks_stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    """After a reusing task stored 4 images, the same task without reuse_results renders
    all 4 again (the procedural renderer is deterministic, so the hashes still match) and
    none of its subtasks says it was reused."""
    owner, word, counts = Client(tasks_stub, stack.token()), _word(), WorkerCounts(stack)
    first = owner.run(word, reuse=True)
    assert counts.settled(4) == (4, 0)

    again = owner.run(word)
    assert counts.settled(8) == (8, 0)
    assert all(s.reused_from == "" for s in again.subtasks)
    assert again.hashes == first.hashes


@pytest.mark.timeout(300)
def test_reuse_crosses_owners_only_from_shared_tasks(
    stack: KilnStack, tasks_stub: tasks_pb2_grpc.TaskServiceStub
) -> None:
    """Owner B with reuse_results and the same inputs as owner A's unshared task renders
    anew; after A runs the task with share_results, owner C (reuse on) is served from A's
    shared task, never from B's unshared one."""
    word, counts = _word(), WorkerCounts(stack)
    a, b, c = (Client(tasks_stub, stack.token()) for _ in range(3))
    a.run(word, reuse=True)
    assert counts.settled(4) == (4, 0)

    from_b = b.run(word, reuse=True)
    assert counts.settled(8) == (8, 0)
    assert all(s.reused_from == "" for s in from_b.subtasks)

    shared = a.run(word, share=True)
    assert counts.settled(12) == (12, 0)  # no reuse_results: it renders, and shares

    from_c = c.run(word, reuse=True)
    assert counts.settled(16) == (12, 4)
    assert [s.reused_from for s in from_c.subtasks] == [s.id for s in shared.subtasks]
    assert from_c.hashes == shared.hashes == from_b.hashes
    # C's copies are C's own: B cannot read them, C can.
    with pytest.raises(grpc.RpcError) as caught:
        b.image_hash(from_c.subtasks[0])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.timeout(240)
def test_reuse_of_an_image_that_is_gone_renders_again(
    stack: KilnStack, tasks_stub: tasks_pb2_grpc.TaskServiceStub, nats_url: str
) -> None:
    """When the images a reusing task would copy were removed from the store (as the
    retention removes expired ones), the task renders them again instead of failing, and
    the worker counts the lookups whose image was gone."""
    owner, word, counts = Client(tasks_stub, stack.token()), _word(), WorkerCounts(stack)
    first = owner.run(word, reuse=True)
    assert counts.settled(4) == (4, 0)
    asyncio.run(_delete_objects(nats_url, [s.result.object_name for s in first.subtasks[:2]]))

    second = owner.run(word, reuse=True)
    assert counts.settled(8) == (6, 2)
    assert [s.reused_from for s in second.subtasks] == ["", ""] + [s.id for s in first.subtasks[2:]]
    assert second.hashes == first.hashes
    assert counts.lookups("gone") == 2


async def _delete_objects(nats_url: str, names: list[str]) -> None:
    """Removes objects from the image store, as its retention does with expired ones."""
    nc = await nats.connect(nats_url)
    try:
        store = await nc.jetstream().object_store(bus.IMAGES_STORE)
        for name in names:
            await store.delete(name)
    finally:
        await nc.close()
