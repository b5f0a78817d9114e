"""Tenancy: another owner's task, subtask or image is indistinguishable from one that does
not exist, in every request shape that names one (the matrix covers the plain requests)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import message
from security import rpcs
from security.conftest import World
from security.test_authz_matrix import normalised

from kiln.tasks.v1 import tasks_pb2

# RPC, and a request naming the given id, in shapes beyond the matrix's plain ones.
VARIANTS: list[tuple[str, str, Callable[[str], message.Message]]] = [
    ("TaskService.GetTask", "task", lambda i: tasks_pb2.GetTaskRequest(task_id=i)),
    (
        "TaskService.ListSubtasks",
        "task",
        lambda i: tasks_pb2.ListSubtasksRequest(
            task_id=i,
            page_size=1,
            states=[tasks_pb2.SUBTASK_STATE_SUCCEEDED],
            variable_filters=[tasks_pb2.VariableFilter(name="color", value="red")],
        ),
    ),
    (
        "TaskService.WatchTask",
        "task",
        lambda i: tasks_pb2.WatchTaskRequest(task_id=i, after_version=3, include_subtasks=True),
    ),
    ("TaskService.CancelTask", "task", lambda i: tasks_pb2.CancelTaskRequest(task_id=i)),
    ("TaskService.DeleteTask", "task", lambda i: tasks_pb2.DeleteTaskRequest(task_id=i)),
    ("TaskService.RetryTask", "task", lambda i: tasks_pb2.RetryTaskRequest(task_id=i)),
    ("TaskService.GetImage", "subtask", lambda i: tasks_pb2.GetImageRequest(subtask_id=i)),
    (
        "TaskService.GetImage",
        "subtask",
        lambda i: tasks_pb2.GetImageRequest(subtask_id=i, thumbnail=True),
    ),
    ("TaskService.GetImage", "running", lambda i: tasks_pb2.GetImageRequest(subtask_id=i)),
    ("TaskService.GetTask", "deleted", lambda i: tasks_pb2.GetTaskRequest(task_id=i)),
]


@pytest.fixture(scope="module")
def owned(world: World) -> dict[str, str]:
    """Ids of the owner's things: a finished task's id, its subtask's id, a subtask that
    has no image yet (pending), and a deleted task's id."""
    subtask = world.finished_subtask(world.owner)
    waiting = world.create_task(world.owner)
    pending = world.tasks.ListSubtasks(
        tasks_pb2.ListSubtasksRequest(task_id=waiting.id), metadata=world.owner.metadata
    ).subtasks[0]
    deleted = world.create_task(world.owner)
    world.tasks.DeleteTask(
        tasks_pb2.DeleteTaskRequest(task_id=deleted.id), metadata=world.owner.metadata
    )
    return {
        "task": subtask.task_id,
        "subtask": subtask.id,
        "running": pending.id,
        "deleted": deleted.id,
    }


@pytest.mark.parametrize(
    ("name", "kind", "build"),
    VARIANTS,
    ids=[f"{n}-{k}-{i}" for i, (n, k, _) in enumerate(VARIANTS)],
)
def test_someone_elses_equals_nonexistent(
    world: World,
    owned: dict[str, str],
    name: str,
    kind: str,
    build: Callable[[str], message.Message],
) -> None:
    """Another user gets NOT_FOUND with the same message and details for the owner's id as
    for an id that names nothing; the owner's id is real (the admin can reach it)."""
    rpc = rpcs.rpc_named(name)
    channel = world.channels[rpcs.TASKS]
    theirs = owned[kind]
    missing = rpcs.random_id()
    seen = rpcs.call(channel, rpc, build(theirs), world.other.metadata, max_responses=1)
    nothing = rpcs.call(channel, rpc, build(missing), world.other.metadata, max_responses=1)
    assert seen.code == grpc.StatusCode.NOT_FOUND, seen
    assert normalised(seen, theirs) == normalised(nothing, missing)
    if rpc.name in {"TaskService.GetTask", "TaskService.ListSubtasks"}:
        admin = rpcs.call(channel, rpc, build(theirs), world.admin.metadata)
        assert admin.code == grpc.StatusCode.OK, admin


@pytest.mark.parametrize(
    "bad_id", ["not-a-uuid", "", "'; DROP TABLE tasks.tasks; --", "0" * 300, "x" * 5000]
)
def test_malformed_id_is_invalid_argument_naming_the_field(world: World, bad_id: str) -> None:
    """An id that is not a UUID is the caller's mistake: INVALID_ARGUMENT naming task_id (as
    in auth), never INTERNAL, and a huge one is not echoed whole (its trailers would pass the
    client's 8 KiB metadata limit and turn the error into RESOURCE_EXHAUSTED)."""
    outcome = rpcs.call(
        world.channels[rpcs.TASKS],
        rpcs.rpc_named("TaskService.GetTask"),
        tasks_pb2.GetTaskRequest(task_id=bad_id),
        world.other.metadata,
    )
    assert outcome.code == grpc.StatusCode.INVALID_ARGUMENT, outcome
    assert "task_id" in outcome.details, outcome
    assert len(outcome.details) < 200


def test_lists_show_only_ones_own_tasks(world: World, owned: dict[str, str]) -> None:
    """ListTasks never returns another owner's tasks, not even by searching their name, and
    filtering by another owner is refused the same whether that owner exists or not."""
    listed = world.tasks.ListTasks(
        tasks_pb2.ListTasksRequest(search="security", page_size=1000),
        metadata=world.other.metadata,
    )
    assert all(t.owner_id == world.other.user_id for t in listed.tasks)
    rpc = rpcs.rpc_named("TaskService.ListTasks")
    channel = world.channels[rpcs.TASKS]
    real = rpcs.call(
        channel, rpc, tasks_pb2.ListTasksRequest(owner_id=world.owner.user_id), world.other.metadata
    )
    missing = rpcs.random_id()
    fake = rpcs.call(
        channel, rpc, tasks_pb2.ListTasksRequest(owner_id=missing), world.other.metadata
    )
    assert real.code == grpc.StatusCode.PERMISSION_DENIED
    assert normalised(real, world.owner.user_id) == normalised(fake, missing)
