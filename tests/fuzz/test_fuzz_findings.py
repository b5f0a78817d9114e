"""Cases the fuzz suite found, pinned as plain tests."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest
from fuzz.conftest import FuzzWorld
from security import rpcs

from kiln.common.testing import statuses
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

NUL = "a\x00b"


def _create(**fields: Any) -> tasks_pb2.CreateTaskRequest:
    request = tasks_pb2.CreateTaskRequest(
        task_name="nul",
        prompt_template="a cube",
        settings=tasks_pb2.TaskSettings(queue=tasks_pb2.QUEUE_LUMINA),
    )
    for name, value in fields.items():
        if name == "tags":
            request.tags.append(value)
        else:
            setattr(request, name, value)
    return request


NUL_CASES = {
    "ListTasks.search": ("TaskService.ListTasks", tasks_pb2.ListTasksRequest(search=NUL), False),
    "ListTasks.tag": ("TaskService.ListTasks", tasks_pb2.ListTasksRequest(tag=NUL), False),
    "ListTasks.owner_id": ("TaskService.ListTasks", tasks_pb2.ListTasksRequest(owner_id=NUL), True),
    "CreateTask.task_name": ("TaskService.CreateTask", _create(task_name=NUL), False),
    "CreateTask.prompt_template": ("TaskService.CreateTask", _create(prompt_template=NUL), False),
    "CreateTask.tags": ("TaskService.CreateTask", _create(tags=NUL), False),
    "CreateTask.request_id": ("TaskService.CreateTask", _create(request_id=NUL), False),
}


@pytest.mark.parametrize("case", sorted(NUL_CASES))
def test_nul_in_text_is_invalid_argument(fuzz_world: FuzzWorld, case: str) -> None:
    """A NUL character in any text field is the caller's mistake: INVALID_ARGUMENT naming
    the field (the auth service already answers so), never INTERNAL."""
    name, request, as_admin = NUL_CASES[case]
    who = fuzz_world.admin if as_admin else fuzz_world.user
    outcome = rpcs.call(
        fuzz_world.channels[rpcs.TASKS], rpcs.rpc_named(name), request, who.metadata
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    field = case.split(".", 1)[1]
    named = statuses.violated_fields(outcome.trailers)
    assert any(f == field or f.startswith((f"{field}[", f"{field}.")) for f in named), (
        case,
        named,
    )


def test_watch_resumed_past_the_current_version_still_gets_the_final_state(
    fuzz_world: FuzzWorld,
) -> None:
    """A watch resumed from a version the task never reached (a client bug, or a task
    restored from a backup) must not end silently: either it is refused at once
    (INVALID_ARGUMENT) or the final state of the task arrives before the stream ends."""
    stub = tasks_pb2_grpc.TaskServiceStub(fuzz_world.channels["tasks"])
    metadata = fuzz_world.user.metadata
    task = stub.CreateTask(
        tasks_pb2.CreateTaskRequest(
            task_name="resume-ahead",
            prompt_template="a cube",
            settings=tasks_pb2.TaskSettings(queue=tasks_pb2.QUEUE_LUMINA),
        ),
        metadata=metadata,
        timeout=20,
    ).task
    call = stub.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=task.id, after_version=task.version + 1000),
        metadata=metadata,
        timeout=30,
    )
    timer = threading.Timer(
        1.0,
        lambda: stub.CancelTask(
            tasks_pb2.CancelTaskRequest(task_id=task.id), metadata=metadata, timeout=20
        ),
    )
    timer.start()
    updates = []
    refused = None
    try:
        updates = list(call)
    except grpc.RpcError as error:
        refused = error.code()
    finally:
        timer.join()
    if refused is not None:
        assert refused == grpc.StatusCode.INVALID_ARGUMENT  # refused at once: fine
        return
    assert updates, "the stream ended OK without a single message"
    assert updates[-1].task.state == tasks_pb2.TASK_STATE_CANCELLED
