"""TaskService and SystemService servicers under grpc_testing's in-process server: the
servicer and its use cases against the real PostgreSQL and NATS, with no socket, no
interceptors and no background loops (see kiln.common.testing.servicers for how the
grpc.aio handlers are driven). Proto in, proto and status out, in well under a second."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc_testing
import pytest

from kiln.common.principal import Principal, Role
from kiln.common.testing import statuses
from kiln.common.testing.servicers import SyncServicer
from kiln.common.testing.tokens import TestSigner
from kiln.tasks.v1 import tasks_pb2
from tasks import app, service
from tasks import testing as h
from tasks.config import TasksConfig
from tasks.servicer import SystemServicer, TaskServicer

TASKS = tasks_pb2.DESCRIPTOR.services_by_name["TaskService"]
SYSTEM = tasks_pb2.DESCRIPTOR.services_by_name["SystemService"]


class Servers:
    """grpc_testing servers over one built (not started) tasks service, one per caller."""

    def __init__(self, built: app.TasksApp) -> None:
        self.built = built
        self.tasks = TaskServicer(
            built.tasks,
            service.Watches(built.tasks, built.config.watch_refresh),
            built.nc.jetstream(),
        )
        self.system = SystemServicer(built.system)

    def as_(self, user_id: str, role: Role = Role.USER) -> Any:
        caller = Principal(user_id=user_id, email=f"{user_id}@example.test", role=role,
                           token_id=f"tok-{user_id}")  # fmt: skip
        loop = asyncio.get_running_loop()
        return grpc_testing.server_from_dictionary(
            {
                TASKS: SyncServicer(self.tasks, loop, caller, TASKS),
                SYSTEM: SyncServicer(self.system, loop, caller, SYSTEM),
            },
            grpc_testing.strict_real_time(),
        )


@pytest.fixture
async def servers(tasks_config: TasksConfig, signer: TestSigner) -> AsyncIterator[Servers]:
    built = await app.build(tasks_config, verifier=signer.verifier())
    try:
        yield Servers(built)
    finally:
        await built.close()


async def _unary(server: Any, method: str, request: Any) -> tuple[Any, Any, grpc.StatusCode, str]:
    """Calls a unary method; (response, trailing metadata, code, details)."""
    descriptor = (TASKS if method in TASKS.methods_by_name else SYSTEM).methods_by_name[method]
    rpc = server.invoke_unary_unary(descriptor, (), request, None)
    result: tuple[Any, Any, grpc.StatusCode, str] = await asyncio.to_thread(rpc.termination)
    return result


async def _stream(server: Any, method: str, request: Any) -> tuple[list[Any], grpc.StatusCode]:
    """Reads a server stream to its end; (responses, code)."""
    rpc = server.invoke_unary_stream(TASKS.methods_by_name[method], (), request, None)

    def read() -> tuple[list[Any], grpc.StatusCode]:
        responses = []
        while True:
            try:
                responses.append(rpc.take_response())
            except ValueError:  # grpc_testing: no more responses, the stream ended
                break
        _trailers, code, _details = rpc.termination()
        return responses, code

    return await asyncio.to_thread(read)


async def test_create_get_and_list_through_the_servicer(servers: Servers) -> None:
    """CreateTask stores a task for the caller and returns its proto; GetTask and ListTasks
    show the same task to its owner."""
    alice = servers.as_("alice")
    created, _, code, details = await _unary(alice, "CreateTask", h.create_request())
    assert code == grpc.StatusCode.OK, details
    task = created.task
    assert (task.owner_id, task.total_images, task.state) == (
        "alice", 2, tasks_pb2.TASK_STATE_PENDING,
    )  # fmt: skip
    got, _, code, _ = await _unary(alice, "GetTask", tasks_pb2.GetTaskRequest(task_id=task.id))
    assert code == grpc.StatusCode.OK and got.task == task
    listed, _, code, _ = await _unary(alice, "ListTasks", tasks_pb2.ListTasksRequest())
    assert code == grpc.StatusCode.OK and [t.id for t in listed.tasks] == [task.id]


async def test_list_subtasks_names_each_bad_variable_filter(servers: Servers) -> None:
    """The servicer's own checks: an empty filter name, a NUL in a value and a variable
    filtered twice with different values are INVALID_ARGUMENT naming each field."""
    alice = servers.as_("alice")
    created, _, _, _ = await _unary(alice, "CreateTask", h.create_request())
    request = tasks_pb2.ListSubtasksRequest(task_id=created.task.id)
    for name, value in (("", "x"), ("color", "a\x00b"), ("color", "red")):
        request.variable_filters.add(name=name, value=value)
    _, trailers, code, _ = await _unary(alice, "ListSubtasks", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert statuses.violated_fields(trailers) == [
        "variable_filters[0].name", "variable_filters[1].value", "variable_filters[2]",
    ]  # fmt: skip


async def test_unknown_state_value_is_invalid_argument(servers: Servers) -> None:
    """A state number the proto does not define is refused, naming `states`."""
    request = tasks_pb2.ListTasksRequest()
    request.states.append(99)  # type: ignore[arg-type]
    _, trailers, code, _ = await _unary(servers.as_("alice"), "ListTasks", request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and statuses.violated_fields(trailers) == [
        "states"
    ]


async def test_other_owner_gets_not_found_and_admin_sees_it(servers: Servers) -> None:
    """Bob cannot see Alice's task (NOT_FOUND, as for a missing one); an admin can."""
    created, _, _, _ = await _unary(servers.as_("alice"), "CreateTask", h.create_request())
    request = tasks_pb2.GetTaskRequest(task_id=created.task.id)
    _, _, code, _ = await _unary(servers.as_("bob"), "GetTask", request)
    assert code == grpc.StatusCode.NOT_FOUND
    got, _, code, _ = await _unary(servers.as_("root", Role.ADMIN), "GetTask", request)
    assert code == grpc.StatusCode.OK and got.task.owner_id == "alice"


async def test_watch_of_a_cancelled_task_sends_its_final_state_and_ends(
    servers: Servers,
) -> None:
    """A server stream through the adapter: watching a task cancelled before it ran sends
    its final state and ends OK."""
    alice = servers.as_("alice")
    created, _, _, _ = await _unary(alice, "CreateTask", h.create_request())
    task_id = created.task.id
    await _unary(alice, "CancelTask", tasks_pb2.CancelTaskRequest(task_id=task_id))
    updates, code = await _stream(alice, "WatchTask", tasks_pb2.WatchTaskRequest(task_id=task_id))
    assert code == grpc.StatusCode.OK
    assert updates and updates[-1].task.state == tasks_pb2.TASK_STATE_CANCELLED
    assert updates[-1].task.cancelled_count == 2


async def test_system_service_is_for_admins(servers: Servers) -> None:
    """SystemService refuses a user (PERMISSION_DENIED) and answers an admin."""
    request = tasks_pb2.GetSystemStatsRequest()
    _, _, code, _ = await _unary(servers.as_("alice"), "GetSystemStats", request)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    stats, _, code, _ = await _unary(servers.as_("root", Role.ADMIN), "GetSystemStats", request)
    assert code == grpc.StatusCode.OK and stats.outbox_backlog == 0
