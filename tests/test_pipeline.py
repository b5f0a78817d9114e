"""A task end to end through the real processes: auth issues the token, tasks expands and
dispatches, a worker renders and stores, tasks folds the events and streams progress."""

from __future__ import annotations

import hashlib
import io

import grpc
import pytest
from PIL import Image

from kiln.common.testing.stack import KilnStack
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.mark.timeout(180)
def test_task_runs_to_completion_with_live_progress(stack: KilnStack) -> None:
    """A 4-image task is watched from its snapshot to SUCCEEDED with versions only going
    up; every image can be downloaded intact; another user cannot see any of it."""
    token = stack.token()
    with grpc.insecure_channel(stack.tasks.target) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        request = tasks_pb2.CreateTaskRequest(
            task_name="pipeline",
            prompt_template="a {color} {shape}",
            settings=tasks_pb2.TaskSettings(
                ratio="1:1", seed=7, output_format=tasks_pb2.OUTPUT_FORMAT_JPEG
            ),
        )
        request.variables["color"].values.extend(["red", "blue"])
        request.variables["shape"].values.extend(["cube", "sphere"])
        task = stub.CreateTask(request, metadata=_auth(token), timeout=30).task
        assert task.total_images == 4

        versions: list[int] = []
        last = None
        for update in stub.WatchTask(
            tasks_pb2.WatchTaskRequest(task_id=task.id), metadata=_auth(token), timeout=150
        ):
            versions.append(update.task.version)
            last = update.task
        assert last is not None
        assert last.state == tasks_pb2.TASK_STATE_SUCCEEDED
        assert (last.succeeded_count, last.failed_count, last.progress) == (4, 0, 1.0)
        assert last.all_subtasks_completed
        assert versions == sorted(versions)

        subtasks = stub.ListSubtasks(
            tasks_pb2.ListSubtasksRequest(task_id=task.id), metadata=_auth(token), timeout=30
        ).subtasks
        assert len(subtasks) == 4
        assert {s.state for s in subtasks} == {tasks_pb2.SUBTASK_STATE_SUCCEEDED}
        for subtask in subtasks:
            parts = list(
                stub.GetImage(
                    tasks_pb2.GetImageRequest(subtask_id=subtask.id),
                    metadata=_auth(token),
                    timeout=30,
                )
            )
            metadata = parts[0].metadata
            data = b"".join(p.chunk for p in parts[1:])
            assert hashlib.sha256(data).hexdigest() == metadata.sha256 == subtask.result.sha256
            assert Image.open(io.BytesIO(data)).size == (1024, 1024)

        stranger = stack.token()
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task.id), metadata=_auth(stranger))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            list(
                stub.GetImage(
                    tasks_pb2.GetImageRequest(subtask_id=subtasks[0].id), metadata=_auth(stranger)
                )
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
