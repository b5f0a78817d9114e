"""Slice control through gRPC: CancelTask, RetryTask, PauseTask and ResumeTask with
variable filters act on exactly that slice, the task's counts and state follow, and bad
filters are INVALID_ARGUMENT naming the field with nothing changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from grid_views import all_subtasks, check_step, grid_request

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h

F = tasks_pb2.VariableFilter
S = tasks_pb2


def where(**values: str) -> list[tasks_pb2.VariableFilter]:
    return [F(name=k, value=v) for k, v in values.items()]


def in_slice(subtask: tasks_pb2.Subtask, **values: str) -> bool:
    return all(subtask.variable_values[k] == v for k, v in values.items())


_WAITING = {S.SUBTASK_STATE_PENDING, S.SUBTASK_STATE_QUEUED}


def view(subtasks: list[tasks_pb2.Subtask]) -> dict[int, tuple[str, int, int, bool]]:
    """index -> (id, state, attempt, held): what a slice control may change. Pending and
    queued read alike: the dispatcher moves one to the other at any time."""
    return {
        s.index: (
            s.id,
            S.SUBTASK_STATE_PENDING if s.state in _WAITING else s.state,
            s.attempt,
            s.held,
        )
        for s in subtasks
    }


async def settled(client: h.Client_, task_id: str) -> None:
    async def check() -> bool:
        return (await h.get_task(client, task_id)).all_subtasks_completed

    await h.wait_for(check, what="every subtask ended")


async def test_cancel_and_retry_a_slice_touch_exactly_that_slice(
    server: h.Running, worker: h.FakeWorker
) -> None:
    """Cancelling style=anime mid-run cancels its waiting subtasks (its running one goes on)
    and leaves every other subtask as it was; the task keeps running, then ends partially
    failed. Retrying style=anime AND light=night re-queues only those, as new attempts, and
    the task re-opens; the grid equals the subtasks' states after each control."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(grid_request())).task
    jobs = await worker.fetch_exactly(12)
    values = {s.id: dict(s.variable_values) for s in await all_subtasks(alice, task.id)}
    anime = [(m, j) for m, j in jobs if values[j.subtask_id]["style"] == "anime"]
    others = [(m, j) for m, j in jobs if values[j.subtask_id]["style"] != "anime"]
    await worker.event(anime[0][1], h.K.SUBTASK_EVENT_KIND_STARTED)

    async def anime_running() -> bool:
        return (await h.get_task(alice, task.id)).running_count == 1

    await h.wait_for(anime_running, what="one anime job running")
    before = await all_subtasks(alice, task.id)
    got = await alice.tasks.CancelTask(
        tasks_pb2.CancelTaskRequest(task_id=task.id, variable_filters=where(style="anime"))
    )
    assert got.task.state == S.TASK_STATE_RUNNING
    assert (got.task.cancelled_count, got.task.running_count) == (3, 1)
    after = await all_subtasks(alice, task.id)
    changed = {i for i, v in view(after).items() if view(before)[i] != v}
    assert changed == {
        s.index for s in before if in_slice(s, style="anime") and s.id != anime[0][1].subtask_id
    }
    assert all(s.state == S.SUBTASK_STATE_CANCELLED for s in after if s.index in changed)
    await check_step(alice, task.id)

    await worker.succeed(*anime[0])
    for message, job in anime[1:]:  # queued jobs a worker ran anyway: ignored
        await worker.succeed(message, job)
    for message, job in others:
        await worker.succeed(message, job)
    await settled(alice, task.id)
    done = await check_step(alice, task.id)
    assert done.state == S.TASK_STATE_PARTIALLY_FAILED
    assert (done.succeeded_count, done.cancelled_count) == (9, 3)

    before = await all_subtasks(alice, task.id)
    retried = await alice.tasks.RetryTask(
        tasks_pb2.RetryTaskRequest(
            task_id=task.id, variable_filters=where(style="anime", light="night")
        )
    )
    night = {s.index for s in before if in_slice(s, style="anime", light="night")}
    cancelled_night = {i for i in night if view(before)[i][1] == S.SUBTASK_STATE_CANCELLED}
    assert retried.retried_count == len(cancelled_night) >= 1
    assert retried.task.state == S.TASK_STATE_RUNNING
    assert retried.task.cancelled_count == 3 - len(cancelled_night)
    after = await all_subtasks(alice, task.id)
    changed = {i for i, v in view(after).items() if view(before)[i] != v}
    assert changed == cancelled_night
    assert all(s.attempt == 2 and s.retried_from for s in after if s.index in changed)
    await check_step(alice, task.id)
    new_jobs = await worker.fetch_exactly(len(cancelled_night))
    assert {j.subtask_id for _, j in new_jobs} == {s.id for s in after if s.index in changed}
    for message, job in new_jobs:
        await worker.succeed(message, job)
    await settled(alice, task.id)
    final = await check_step(alice, task.id)
    assert final.state == S.TASK_STATE_PARTIALLY_FAILED
    assert final.succeeded_count == 9 + len(cancelled_night)


async def test_retry_a_slice_while_the_task_runs(narrow: h.Running, standard: h.FakeWorker) -> None:
    """A failed subtask's slice is retried while the rest still waits: one new attempt, no
    other subtask touched, no job sent twice; a slice with nothing to retry is
    FAILED_PRECONDITION; the task then succeeds with exact counts."""
    alice = narrow.client("alice")
    task = (await alice.tasks.CreateTask(grid_request(images_per_combination=1))).task
    [(message, job)] = await standard.fetch_exactly(1)
    await standard.fail(message, job)
    failed = next(s for s in await all_subtasks(alice, task.id) if s.id == job.subtask_id)

    async def failed_counted() -> bool:
        return (await h.get_task(alice, task.id)).failed_count == 1

    await h.wait_for(failed_counted, what="the failure counted")
    slice_ = dict(failed.variable_values)
    before = await all_subtasks(alice, task.id)
    retried = await alice.tasks.RetryTask(
        tasks_pb2.RetryTaskRequest(task_id=task.id, variable_filters=where(**slice_))
    )
    assert retried.retried_count == 1 and retried.task.failed_count == 0
    after = await all_subtasks(alice, task.id)
    changed = {i for i, v in view(after).items() if view(before)[i] != v}
    assert changed == {failed.index}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.RetryTask(
            tasks_pb2.RetryTaskRequest(task_id=task.id, variable_filters=where(**slice_))
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    seen: list[str] = []
    while not (await h.get_task(alice, task.id)).all_subtasks_completed:
        for message, job in await standard.fetch(1, wait=1.0):
            seen.append(job.subtask_id)
            await standard.succeed(message, job)
    assert len(seen) == len(set(seen)) == 6
    final = await check_step(alice, task.id)
    assert (final.state, final.succeeded_count) == (S.TASK_STATE_SUCCEEDED, 6)


async def test_paused_slice_is_held_until_resumed(
    narrow: h.Running, standard: h.FakeWorker
) -> None:
    """PauseTask style=anime marks the slice held (the task itself is not paused): the
    other subtasks run to the end while the anime ones wait, counted as held in the grid;
    resuming another slice changes nothing, resuming style=anime lets them run and the
    task succeeds. ResumeTask without filters releases every held slice."""
    alice = narrow.client("alice")
    task = (await alice.tasks.CreateTask(grid_request(images_per_combination=1))).task
    early = await standard.fetch_exactly(2)
    paused = await alice.tasks.PauseTask(
        tasks_pb2.PauseTaskRequest(task_id=task.id, variable_filters=where(style="anime"))
    )
    assert not paused.task.paused
    listing = await all_subtasks(alice, task.id)
    assert {s.index for s in listing if s.held} == {
        s.index for s in listing if in_slice(s, style="anime")
    }
    early_ids = {j.subtask_id for _, j in early}
    for message, job in early:
        await standard.succeed(message, job)
    ran: list[str] = []
    while jobs := await standard.fetch(1, wait=1.5):
        for message, job in jobs:
            ran.append(job.subtask_id)
            await standard.succeed(message, job)
    anime_ids = {s.id for s in listing if in_slice(s, style="anime")}
    assert not anime_ids & set(ran)
    assert len(ran) + len(early_ids) == 6 - len(anime_ids - early_ids)
    await check_step(alice, task.id)
    grid = (await alice.tasks.GetTaskGrid(tasks_pb2.GetTaskGridRequest(task_id=task.id))).grid
    style = next(v for v in grid.variables if v.name == "style")
    counts = {v.value: v.counts for v in style.values}
    assert counts["anime"].pending == counts["anime"].held == len(anime_ids - early_ids) >= 1
    assert counts["oil"].succeeded == counts["watercolor"].succeeded == 2
    await alice.tasks.ResumeTask(
        tasks_pb2.ResumeTaskRequest(task_id=task.id, variable_filters=where(style="oil"))
    )
    assert await standard.fetch(1, wait=1.0) == []
    await alice.tasks.ResumeTask(
        tasks_pb2.ResumeTaskRequest(task_id=task.id, variable_filters=where(style="anime"))
    )
    while not (await h.get_task(alice, task.id)).all_subtasks_completed:
        for message, job in await standard.fetch(1, wait=1.0):
            assert job.subtask_id in anime_ids
            await standard.succeed(message, job)
    final = await check_step(alice, task.id)
    assert (final.state, final.succeeded_count) == (S.TASK_STATE_SUCCEEDED, 6)

    other = (await alice.tasks.CreateTask(grid_request(images_per_combination=1))).task
    await alice.tasks.PauseTask(
        tasks_pb2.PauseTaskRequest(task_id=other.id, variable_filters=where(light="night"))
    )
    assert any(s.held for s in await all_subtasks(alice, other.id))
    await alice.tasks.ResumeTask(tasks_pb2.ResumeTaskRequest(task_id=other.id))
    assert not any(s.held for s in await all_subtasks(alice, other.id))


BAD_FILTERS = [
    (where(mood="calm"), "variable_filters[0].name"),
    (where(style="cubist"), "variable_filters[0].value"),
    ([F(name="", value="anime")], "variable_filters[0].name"),
    ([F(name="style", value="anime"), F(name="style", value="oil")], "variable_filters[1]"),
    ([F(name="light", value="day"), F(name="style", value="a\x00")], "variable_filters[1].value"),
]


def _controls(client: h.Client_, task_id: str) -> dict[str, Callable[[Any], Awaitable[Any]]]:
    t = client.tasks
    return {
        "ListSubtasks": lambda f: t.ListSubtasks(
            S.ListSubtasksRequest(task_id=task_id, variable_filters=f)
        ),
        "CancelTask": lambda f: t.CancelTask(
            S.CancelTaskRequest(task_id=task_id, variable_filters=f)
        ),
        "RetryTask": lambda f: t.RetryTask(S.RetryTaskRequest(task_id=task_id, variable_filters=f)),
        "PauseTask": lambda f: t.PauseTask(S.PauseTaskRequest(task_id=task_id, variable_filters=f)),
        "ResumeTask": lambda f: t.ResumeTask(
            S.ResumeTaskRequest(task_id=task_id, variable_filters=f)
        ),
    }


async def test_bad_filters_are_invalid_argument_and_change_nothing(server: h.Running) -> None:
    """An unknown variable or value, an empty name, a variable filtered twice with two
    values or a NUL character is INVALID_ARGUMENT naming `variable_filters[i]...` for every
    control that takes filters (ListSubtasks, a read, refuses the malformed ones and finds
    nothing for an unknown variable or value), and the task and its subtasks stay as they
    were."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(grid_request())).task
    before_task = await h.get_task(alice, task.id)
    before = view(await all_subtasks(alice, task.id))
    for rpc, call in _controls(alice, task.id).items():
        for filters, field in BAD_FILTERS:
            if (
                rpc == "ListSubtasks"
                and field.endswith(("0].name", "0].value"))
                and filters[0].name
            ):
                continue  # a read: an unknown variable or value finds nothing (below)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(filters)
            found = h.status_details(caught.value)
            assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT, (rpc, field)
            assert field in found["fields"], (rpc, found)
    for filters, _ in BAD_FILTERS[:2]:
        found = await alice.tasks.ListSubtasks(
            S.ListSubtasksRequest(task_id=task.id, variable_filters=filters)
        )
        assert list(found.subtasks) == []
    after_task = await h.get_task(alice, task.id)
    assert after_task.version == before_task.version
    # Dispatch may move pending -> queued meanwhile; ids, attempts and holds may not move.
    after = view(await all_subtasks(alice, task.id))
    assert {i: (v[0], v[2], v[3]) for i, v in after.items()} == {
        i: (v[0], v[2], v[3]) for i, v in before.items()
    }


async def test_cancelling_every_slice_ends_the_task_and_others_see_nothing(
    server: h.Running,
) -> None:
    """Cancelling one slice leaves the task running; cancelling the rest too ends it,
    cancelled since nothing succeeded, with a task-finished state derived from its counts.
    Another owner's slice controls and grid are NOT_FOUND (their filters are not even
    checked against the task, which would tell its variables)."""
    alice, bob = server.client("alice"), server.client("bob")
    task = (await alice.tasks.CreateTask(grid_request(images_per_combination=1))).task
    for call in (
        bob.tasks.CancelTask(
            S.CancelTaskRequest(task_id=task.id, variable_filters=where(style="nope"))
        ),
        bob.tasks.PauseTask(S.PauseTaskRequest(task_id=task.id, variable_filters=where(a="b"))),
        bob.tasks.GetTaskGrid(S.GetTaskGridRequest(task_id=task.id, row_variable="x")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    first = await alice.tasks.CancelTask(
        S.CancelTaskRequest(task_id=task.id, variable_filters=where(light="day"))
    )
    assert first.task.state == S.TASK_STATE_PENDING and first.task.cancelled_count == 3
    last = await alice.tasks.CancelTask(
        S.CancelTaskRequest(task_id=task.id, variable_filters=where(light="night"))
    )
    assert last.task.state == S.TASK_STATE_CANCELLED
    assert last.task.all_subtasks_completed and last.task.cancelled_count == 6
    await check_step(alice, task.id)
