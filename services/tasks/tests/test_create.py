"""CreateTask, GetTask, ListTasks and ListSubtasks through gRPC."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


async def test_create_stores_task_and_subtasks(server: h.Running) -> None:
    """CreateTask expands variables into subtasks (coverage-first), records seeds, and
    GetTask/ListSubtasks read them back."""
    alice = server.client("alice")
    request = h.create_request(values=("red", "blue", "green"), images=2)
    request.settings.seed = 100
    created = (await alice.tasks.CreateTask(request)).task
    assert created.id and created.total_images == 6
    assert created.state == tasks_pb2.TASK_STATE_PENDING
    assert created.version >= 1
    got = await h.get_task(alice, created.id)
    assert got.total_images == 6 and got.owner_id == "alice"
    page = await alice.tasks.ListSubtasks(tasks_pb2.ListSubtasksRequest(task_id=created.id))
    subtasks = page.subtasks
    assert [s.index for s in subtasks] == list(range(6))
    assert [s.seed for s in subtasks] == [100 + i for i in range(6)]
    assert {s.variable_values["color"] for s in subtasks[:3]} == {"red", "blue", "green"}
    assert subtasks[0].prompt == f"a {subtasks[0].variable_values['color']} cat"
    assert all(s.width == 1024 and s.height == 1024 for s in subtasks)


async def test_validate_only_stores_nothing(server: h.Running) -> None:
    """validate_only returns the would-be total and an ETA and stores nothing."""
    alice = server.client("alice")
    request = h.create_request(values=("a", "b", "c", "d"), images=3, validate_only=True)
    response = await alice.tasks.CreateTask(request)
    assert response.task.total_images == 12 and not response.task.id
    assert response.eta.ToMilliseconds() > 0
    listed = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert list(listed.tasks) == []


async def test_every_validation_rule_reported_at_once(server: h.Running) -> None:
    """Every violation comes back in one INVALID_ARGUMENT with a field per problem."""
    alice = server.client("alice")
    request = tasks_pb2.CreateTaskRequest(
        task_name="",
        prompt_template="a {colour} {shape}",
        variables={
            "shape": tasks_pb2.VariableValues(values=[]),
            "a": tasks_pb2.VariableValues(values=["1", "2"]),
            "b": tasks_pb2.VariableValues(values=["1"]),
        },
        zip_groups=[tasks_pb2.ZipGroup(variables=["a", "b"])],
        priority=42,
        settings=tasks_pb2.TaskSettings(
            ratio="5:4",
            queue=99,  # type: ignore[arg-type]
            webhook=tasks_pb2.Webhook(url="not a url", secret="0123456789abcdef"),
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.CreateTask(request)
    details = h.status_details(caught.value)
    assert details["code"] == grpc.StatusCode.INVALID_ARGUMENT
    fields = set(details["fields"])
    for expected in (
        "task_name",
        "prompt_template",
        'variables["shape"].values',
        "zip_groups[0]",
        "settings.ratio",
        "settings.queue",
        "priority",
        "settings.webhook.url",
    ):
        assert expected in fields, (expected, fields)


async def test_over_the_limit_names_count_and_limit(server: h.Running) -> None:
    """A task over TASKS_MAX_SUBTASKS is INVALID_ARGUMENT naming the count and the limit."""
    alice = server.client("alice")
    request = h.create_request(values=[str(i) for i in range(1000)], images=11)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.CreateTask(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "11000" in (caught.value.details() or "")
    assert "10000" in (caught.value.details() or "")


async def test_request_id_makes_create_idempotent(server: h.Running) -> None:
    """The same request_id returns the same task, also when the copies race; only one set
    of subtasks is stored."""
    alice = server.client("alice")
    request = h.create_request(values=("x", "y", "z"), request_id="req-1")
    results = await asyncio.gather(*(alice.tasks.CreateTask(request) for _ in range(8)))
    ids = {r.task.id for r in results}
    assert len(ids) == 1
    again = await alice.tasks.CreateTask(request)
    assert again.task.id in ids
    listed = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest())
    assert len(listed.tasks) == 1
    # Another owner with the same request id gets a task of their own.
    bob = server.client("bob")
    other = await bob.tasks.CreateTask(request)
    assert other.task.id not in ids


async def test_list_tasks_pages_filters_and_escapes(server: h.Running) -> None:
    """ListTasks is newest first with stable page tokens; filters by state, tag and search
    text where % and _ are plain characters; owners only see their own tasks."""
    alice = server.client("alice")
    created = []
    for i in range(7):
        request = h.create_request(name=f"batch_{i}%", values=("a",))
        request.tags.append("even" if i % 2 == 0 else "odd")
        created.append((await alice.tasks.CreateTask(request)).task.id)
    await server.client("bob").tasks.CreateTask(h.create_request(name="bob's"))
    seen: list[str] = []
    token = ""
    while True:
        page = await alice.tasks.ListTasks(
            tasks_pb2.ListTasksRequest(page_size=3, page_token=token)
        )
        seen += [t.id for t in page.tasks]
        # A concurrent insert must not shift the pages.
        if not token:
            await alice.tasks.CreateTask(h.create_request(name="late"))
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(created))
    tagged = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(tag="odd"))
    assert len(tagged.tasks) == 3
    found = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(search="H_3%"))
    assert [t.task_name for t in found.tasks] == ["batch_3%"]
    nothing = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(search="%"))
    assert len(nothing.tasks) == 7  # every name has a literal %
    none = await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(search="_x"))
    assert list(none.tasks) == []
    states = await alice.tasks.ListTasks(
        tasks_pb2.ListTasksRequest(states=[tasks_pb2.TASK_STATE_SUCCEEDED])
    )
    assert list(states.tasks) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(page_token="garbage!"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.ListTasks(tasks_pb2.ListTasksRequest(owner_id="bob"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    admin = server.client("root", role="admin")
    bobs = await admin.tasks.ListTasks(tasks_pb2.ListTasksRequest(owner_id="bob"))
    assert [t.task_name for t in bobs.tasks] == ["bob's"]


async def test_list_subtasks_filters_by_state_and_variable(server: h.Running) -> None:
    """ListSubtasks filters by variable values (all must match) and by state, and pages."""
    alice = server.client("alice")
    request = tasks_pb2.CreateTaskRequest(
        task_name="grid",
        prompt_template="{a} {b}",
        variables={
            "a": tasks_pb2.VariableValues(values=["1", "2", "3"]),
            "b": tasks_pb2.VariableValues(values=["x", "y"]),
        },
    )
    task = (await alice.tasks.CreateTask(request)).task
    assert task.total_images == 6
    only = await alice.tasks.ListSubtasks(
        tasks_pb2.ListSubtasksRequest(
            task_id=task.id,
            variable_filters=[
                tasks_pb2.VariableFilter(name="a", value="2"),
                tasks_pb2.VariableFilter(name="b", value="y"),
            ],
        )
    )
    assert [(s.variable_values["a"], s.variable_values["b"]) for s in only.subtasks] == [("2", "y")]
    pages: list[int] = []
    token = ""
    while True:
        page = await alice.tasks.ListSubtasks(
            tasks_pb2.ListSubtasksRequest(task_id=task.id, page_size=4, page_token=token)
        )
        pages += [s.index for s in page.subtasks]
        token = page.next_page_token
        if not token:
            break
    assert pages == list(range(6))
    done = await alice.tasks.ListSubtasks(
        tasks_pb2.ListSubtasksRequest(task_id=task.id, states=[tasks_pb2.SUBTASK_STATE_SUCCEEDED])
    )
    assert list(done.subtasks) == []


async def test_active_task_limit(tasks_config: h.TasksConfig, signer: h.TestSigner) -> None:
    """Past TASKS_MAX_ACTIVE_TASKS_PER_USER unfinished tasks, CreateTask is RESOURCE_EXHAUSTED
    for that user only."""
    cfg = h.make_config(
        tasks_config.database_url, tasks_config.nats_url, TASKS_MAX_ACTIVE_TASKS_PER_USER="2"
    )
    running = await h.start(cfg, signer)
    try:
        alice = running.client("alice")
        for _ in range(2):
            await alice.tasks.CreateTask(h.create_request())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await alice.tasks.CreateTask(h.create_request())
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await running.client("bob").tasks.CreateTask(h.create_request())
    finally:
        await h.stop(running)


async def test_waiting_task_has_queue_position_and_eta(server: h.Running) -> None:
    """A task waiting behind another one's jobs reports how many jobs of its queue are
    ahead; with no live worker on its queue it says so and gives no ETA (it would wait
    forever, not the few seconds an ETA would promise)."""
    alice = server.client("alice")
    await alice.tasks.CreateTask(h.create_request(values=[str(i) for i in range(30)]))
    waiting = (await alice.tasks.CreateTask(h.create_request(values=("a",)))).task
    got = await h.get_task(alice, waiting.id)
    assert got.state == tasks_pb2.TASK_STATE_PENDING
    assert got.queue_position == 30
    assert got.wait_reason == tasks_pb2.WAIT_REASON_NO_WORKER
    assert not got.HasField("eta")


async def test_paging_arguments_are_checked(server: h.Running) -> None:
    """A negative page size, a forged token, or a token reused with other filters is
    INVALID_ARGUMENT; so is an id that is not a UUID, naming task_id (a well-formed id that
    names nothing is NOT_FOUND)."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(h.create_request(values=("a", "b", "c")))).task
    first = await alice.tasks.ListSubtasks(
        tasks_pb2.ListSubtasksRequest(task_id=task.id, page_size=1)
    )
    bad_requests = [
        tasks_pb2.ListSubtasksRequest(task_id=task.id, page_size=-1),
        tasks_pb2.ListSubtasksRequest(task_id=task.id, page_token="eyJ4Ijox"),
        tasks_pb2.ListSubtasksRequest(
            task_id=task.id,
            page_token=first.next_page_token,
            states=[tasks_pb2.SUBTASK_STATE_FAILED],
        ),
        tasks_pb2.ListSubtasksRequest(
            task_id=task.id, variable_filters=[tasks_pb2.VariableFilter(name="", value="x")]
        ),
    ]
    for request in bad_requests:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await alice.tasks.ListSubtasks(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.GetTask(tasks_pb2.GetTaskRequest(task_id="not-a-uuid"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task_id" in (caught.value.details() or "")
