"""Caller mistakes through the real tasks server: each is INVALID_ARGUMENT naming the field
(never INTERNAL, and never RESOURCE_EXHAUSTED because the error echoed too much)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks import testing as h


async def _refusal(call: Any) -> dict[str, Any]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return dict(h.status_details(caught.value))


def _forged(token: str, position: Any = None, *, raw: bytes | None = None) -> str:
    """`token` (one of ours) with its position replaced, or `raw` bytes as the token."""
    if raw is None:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        data["p"] = position
        raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


DEEP = b'{"p":' + b"[" * 50_000 + b"]" * 50_000 + b',"f":"x"}'


async def test_forged_page_tokens_are_invalid_argument(server: h.Running) -> None:
    """ListTasks and ListSubtasks answer INVALID_ARGUMENT on page_token for a deeply nested
    JSON token and for real tokens whose position was given the wrong types (`"i": true`,
    a number too large for the database, a bool time)."""
    alice = server.client("alice")
    first = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c")))).task
    await alice.tasks.CreateTask(h.create_request(name="two"))
    tasks_page = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(page_size=1))
    subtasks_page = await alice.tasks.ListSubtasks(
        tasks_pb2.ListSubtasksRequest(task_id=first.id, page_size=1)
    )
    task_token, subtask_token = tasks_page.next_page_token, subtasks_page.next_page_token
    assert task_token and subtask_token
    for bad in (
        _forged("", raw=DEEP),
        _forged(task_token, {"t": True, "i": True}),
        _forged(task_token, {"t": "2026-01-01T00:00:00+00:00", "i": True}),
        _forged(task_token, {"t": "2026-01-01T00:00:00+00:00", "i": 7}),
    ):
        found = await _refusal(
            alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(page_size=1, page_token=bad))
        )
        assert (found["code"], found["fields"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            ["page_token"],
        )
    for bad in (
        _forged("", raw=DEEP),
        _forged(subtask_token, {"i": True}),
        _forged(subtask_token, {"i": 2**70}),
        _forged(subtask_token, {"i": "1"}),
    ):
        request = tasks_pb2.ListSubtasksRequest(task_id=first.id, page_size=1, page_token=bad)
        found = await _refusal(alice.tasks.ListSubtasks(request))
        assert (found["code"], found["fields"]) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            ["page_token"],
        )


async def test_nul_in_variable_filters_is_invalid_argument(server: h.Running) -> None:
    """A NUL in a variable filter's name or value names that field."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request())).task
    request = tasks_pb2.ListSubtasksRequest(
        task_id=task.id,
        variable_filters=[
            tasks_pb2.VariableFilter(name="color", value="r\x00d"),
            tasks_pb2.VariableFilter(name="c\x00", value="x"),
        ],
    )
    found = await _refusal(alice.tasks.ListSubtasks(request))
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert {"variable_filters[0].value", "variable_filters[1].name"} <= set(found["fields"])


async def test_huge_echoed_values_and_many_variables_are_invalid_argument(
    server: h.Running,
) -> None:
    """A 20 KB ratio, a 20 KB variable name, 20 KB ListTasks search and tag, and 4,301
    variables are each INVALID_ARGUMENT naming the field; the error fits the client's
    trailer limit."""
    alice = server.client("alice")
    huge_ratio = h.create_request(settings=tasks_pb2.TaskSettings(ratio="9" * 20_000))
    found = await _refusal(alice.tasks.CreateTask(huge_ratio))
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert "settings.ratio" in found["fields"]
    huge_name = h.create_request()
    huge_name.variables["é" * 20_000].values.append("x")
    found = await _refusal(alice.tasks.CreateTask(huge_name))
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    for request in (
        tasks_pb2.ListTasksRequest(search="s" * 20_000),
        tasks_pb2.ListTasksRequest(tag="t" * 20_000),
    ):
        found = await _refusal(alice.tasks.ListTasks(request))
        assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
        assert found["fields"] in (["search"], ["tag"])
    many = tasks_pb2.CreateTaskRequest(task_name="many", prompt_template="x")
    for i in range(4301):
        many.variables[f"v{i}"].values.extend("0123456789")
    found = await _refusal(alice.tasks.CreateTask(many))
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert "variables" in found["fields"]


def _exploding(value: str) -> tasks_pb2.CreateTaskRequest:
    """3,999 characters of template, 1,333 placeholders: 666,500 characters rendered."""
    request = tasks_pb2.CreateTaskRequest(
        task_name="explode",
        prompt_template="{v}" * 1333,
        settings=tasks_pb2.TaskSettings(negative_prompt="{v}" * 1333),
    )
    request.variables["v"].values.extend(["short", value])
    return request


async def test_create_refuses_a_template_that_renders_too_long(server: h.Running) -> None:
    """The prompt limit holds for the rendered prompt and negative prompt: the exploding
    template is refused, naming both fields and the limit, and nothing is stored."""
    alice = server.client("alice")
    found = await _refusal(alice.tasks.CreateTask(_exploding("x" * 500)))
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert {"prompt_template", "settings.negative_prompt"} <= set(found["fields"])
    assert "over the limit of 16000" in found["message"]
    listed = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert list(listed.tasks) == []


@pytest.fixture
async def roomy(
    tasks_config: h.TasksConfig, signer: h.TestSigner, database_url: str
) -> AsyncIterator[h.Running]:
    """A tasks server whose rendered prompts may reach 2,000,000 characters."""
    cfg = h.make_config(
        database_url, tasks_config.nats_url, TASKS_MAX_RENDERED_PROMPT_CHARS="2000000"
    )
    running = await h.start(cfg, signer)
    yield running
    await h.stop(running)


async def test_create_refuses_jobs_larger_than_the_bus_takes(roomy: h.Running) -> None:
    """With the rendered limit raised, a task whose jobs exceed the NATS server's max
    payload (1 MiB by default, read from the connection) is refused on prompt_template,
    naming the bus's limit, rather than stored to fail in the dispatcher."""
    alice = roomy.client("alice")
    found = await _refusal(alice.tasks.CreateTask(_exploding("é" * 500)))
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert found["fields"] == ["prompt_template"]
    assert "message bus's limit of" in found["message"]
    fits = await alice.tasks.CreateTask(_exploding("x" * 100))  # 2 x 133,300 bytes
    assert fits.task.total_images == 2


async def test_request_size_limit_fits_create_task(server: h.Running) -> None:
    """The tasks service takes a CreateTask of several MiB (twenty zipped variables of 500
    values of 500 characters, 5 MB) but refuses a 9 MiB request (over its 8 MiB default)
    with RESOURCE_EXHAUSTED before reading it into a handler."""
    alice = server.client("alice")
    big = tasks_pb2.CreateTaskRequest(task_name="big", prompt_template="{v0}", validate_only=True)
    names = [f"v{i}" for i in range(20)]
    for name in names:
        big.variables[name].values.extend(f"{i:03d}" + "x" * 497 for i in range(500))
    big.zip_groups.add().variables.extend(names)
    assert big.ByteSize() > 5_000_000
    # The response echoes the task, variables and all: take it on a channel that can.
    target = f"127.0.0.1:{server.app.host.port}"
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = tasks_pb2_grpc.TaskServiceStub(channel)
        created = await stub.CreateTask(big, metadata=alice.metadata, timeout=30)
    assert created.task.total_images == 500
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(search="s" * 9 * 1024 * 1024))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_pages_of_long_prompts_fit_a_default_client(roomy: h.Running) -> None:
    """Subtasks whose rendered prompts are long (here 200,000 characters each, twice) come
    in pages a default client (4 MiB receive limit) can take, shorter than asked for, and
    paging on from the token reaches every subtask once."""
    alice = roomy.client("alice")
    request = tasks_pb2.CreateTaskRequest(
        task_name="long prompts",
        prompt_template="{v}" * 400,
        settings=tasks_pb2.TaskSettings(negative_prompt="{v}" * 400),
    )
    request.variables["v"].values.extend(f"{i:03d}" + "x" * 497 for i in range(30))
    task = (await alice.tasks.CreateTask(request)).task
    seen: list[int] = []
    token = ""
    while True:
        page = await alice.tasks.ListSubtasks(
            tasks_pb2.ListSubtasksRequest(task_id=task.id, page_size=1000, page_token=token)
        )
        assert 0 < len(page.subtasks) < 30
        seen += [s.index for s in page.subtasks]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(30))
