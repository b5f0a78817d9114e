"""Page tokens forged from real ones, against every List RPC of the running stack: a token
whose position holds the wrong types or sizes (`"i": true`, 2**80, nested lists), deeply
nested JSON or a token far too long is INVALID_ARGUMENT on page_token, never INTERNAL."""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from fuzz import strategies
from fuzz.conftest import FuzzWorld
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from security import rpcs
from security.conftest import Person

from kiln.auth.v1 import auth_pb2
from kiln.tasks.v1 import tasks_pb2

C = grpc.StatusCode
EXAMPLES = 25


def _list_subtasks_of(world: FuzzWorld) -> Callable[[str, int], Any]:
    outcome = rpcs.call(
        world.channels[rpcs.TASKS],
        rpcs.rpc_named("TaskService.CreateTask"),
        tasks_pb2.CreateTaskRequest(
            task_name="paging",
            prompt_template="a {v}",
            variables={"v": tasks_pb2.VariableValues(values=["a", "b", "c"])},
            settings=tasks_pb2.TaskSettings(queue=tasks_pb2.QUEUE_LUMINA),
        ),
        world.user.metadata,
    )
    task = tasks_pb2.CreateTaskResponse.FromString(outcome.responses[0]).task
    return lambda token, size: tasks_pb2.ListSubtasksRequest(
        task_id=task.id, page_size=size, page_token=token
    )


def _api_keys_of(world: FuzzWorld) -> None:
    for _ in range(2):
        rpcs.call(
            world.channels[rpcs.AUTH],
            rpcs.rpc_named("AuthService.CreateApiKey"),
            auth_pb2.CreateApiKeyRequest(name=f"paging-{uuid.uuid4().hex[:6]}"),
            world.user.metadata,
        )


LISTS: dict[str, tuple[str, Any]] = {
    "TaskService.ListTasks": (
        rpcs.TASKS,
        lambda t, n: tasks_pb2.ListTasksRequest(page_token=t, page_size=n),
    ),
    "TaskService.ListSubtasks": (rpcs.TASKS, None),
    "AuthService.ListUsers": (
        rpcs.AUTH,
        lambda t, n: auth_pb2.ListUsersRequest(page_token=t, page_size=n),
    ),
    "AuthService.ListApiKeys": (
        rpcs.AUTH,
        lambda t, n: auth_pb2.ListApiKeysRequest(page_token=t, page_size=n),
    ),
}
RESPONSES: dict[str, Any] = {  # the generated classes, whose fields mypy cannot see
    "TaskService.ListTasks": tasks_pb2.ListTasksResponse,
    "TaskService.ListSubtasks": tasks_pb2.ListSubtasksResponse,
    "AuthService.ListUsers": auth_pb2.ListUsersResponse,
    "AuthService.ListApiKeys": auth_pb2.ListApiKeysResponse,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(LISTS))
def test_forged_page_tokens(fuzz_world: FuzzWorld, name: str) -> None:
    """Tokens forged from a real next_page_token get OK or INVALID_ARGUMENT naming
    page_token, and the server stays healthy."""
    host, build = LISTS[name]
    if name == "TaskService.ListSubtasks":
        build = _list_subtasks_of(fuzz_world)
    if name == "AuthService.ListApiKeys":
        _api_keys_of(fuzz_world)
    caller: Person = fuzz_world.admin if name == "AuthService.ListUsers" else fuzz_world.user
    rpc = rpcs.rpc_named(name)
    channel = fuzz_world.channels[host]
    first = rpcs.call(channel, rpc, build("", 1), caller.metadata)
    assert first.code == C.OK, first
    real: str = RESPONSES[name].FromString(first.responses[0]).next_page_token
    assert real, f"{name} gave no second page to forge a token from"
    seen: collections.Counter[str] = collections.Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(token=strategies.page_tokens(real), size=st.sampled_from([1, 1000]))
    def run(token: str, size: int) -> None:
        outcome = rpcs.call(channel, rpc, build(token, size), caller.metadata)
        seen[outcome.code.name] += 1
        assert outcome.code in (C.OK, C.INVALID_ARGUMENT), (
            token[:100],
            outcome.code,
            outcome.details,
        )
        if outcome.code == C.INVALID_ARGUMENT:
            assert "page_token" in outcome.details, outcome.details

    run()
    print(f"{name}: {dict(seen)}")
