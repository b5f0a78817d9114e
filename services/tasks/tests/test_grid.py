"""GetTaskGrid and WatchTask's grid through gRPC: counts by variable value and state that
equal the subtasks' own states at every step of a running task, the two-way table, and
clear errors for bad variables."""

from __future__ import annotations

import grpc
import pytest
from grid_views import check_step, grid_request

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


async def test_grid_counts_equal_subtask_states_at_every_step(
    narrow: h.Running, standard: h.FakeWorker
) -> None:
    """While a 12-subtask task runs job by job (some fail, one slice is cancelled), after
    every step the grid's per-value, per-cell and total counts equal the states the subtask
    listing shows at the same task version, and its total equals the task's counters."""
    alice = narrow.client("alice")
    task = (await alice.tasks.CreateTask(grid_request())).task
    await check_step(alice, task.id)
    step = 0
    while True:
        jobs = await standard.fetch(1, wait=1.0)
        if not jobs:
            got = await h.get_task(alice, task.id)
            if got.all_subtasks_completed:
                break
            continue
        [(message, job)] = jobs
        await standard.event(job, h.K.SUBTASK_EVENT_KIND_STARTED)
        await h.wait_for(
            lambda: _running(alice, task.id), what="the started job counted as running"
        )
        await check_step(alice, task.id)
        if step % 4 == 3:
            await standard.fail(message, job)
        else:
            await standard.succeed(message, job)
        if step == 2:
            await alice.tasks.CancelTask(
                tasks_pb2.CancelTaskRequest(
                    task_id=task.id,
                    variable_filters=[tasks_pb2.VariableFilter(name="style", value="watercolor")],
                )
            )
        await check_step(alice, task.id)
        step += 1
    final = await check_step(alice, task.id)
    assert final.state == tasks_pb2.TASK_STATE_PARTIALLY_FAILED
    grid = (await alice.tasks.GetTaskGrid(tasks_pb2.GetTaskGridRequest(task_id=task.id))).grid
    styles = {
        v.value: v.counts for v in next(g for g in grid.variables if g.name == "style").values
    }
    assert list(styles) == ["anime", "oil", "watercolor"]
    assert styles["watercolor"].cancelled >= 1
    assert not grid.HasField("table")


async def _running(client: h.Client_, task_id: str) -> bool:
    return (await h.get_task(client, task_id)).running_count == 1


async def test_grid_table_lists_every_cell_in_value_order(server: h.Running) -> None:
    """The two-way table has the row and column values in the task's order and one cell
    per pair, each counting its 2 pending subtasks; per-variable counts sum to the total."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(grid_request())).task
    grid = (
        await alice.tasks.GetTaskGrid(
            tasks_pb2.GetTaskGridRequest(
                task_id=task.id, row_variable="light", column_variable="style"
            )
        )
    ).grid
    table = grid.table
    assert (table.row_variable, table.column_variable) == ("light", "style")
    assert list(table.row_values) == ["day", "night"]
    assert list(table.column_values) == ["anime", "oil", "watercolor"]
    assert [(c.row_value, c.column_value) for c in table.cells] == [
        (r, c) for r in ("day", "night") for c in ("anime", "oil", "watercolor")
    ]
    assert all(c.counts.total == 2 for c in table.cells)
    assert [v.name for v in grid.variables] == ["light", "style"]
    for variable in grid.variables:
        assert sum(v.counts.total for v in variable.values) == grid.total.total == 12
    assert grid.version == task.version or grid.version > 0


@pytest.mark.parametrize(
    ("row", "column", "field"),
    [
        ("style", "", "column_variable"),
        ("", "light", "row_variable"),
        ("stlye", "light", "row_variable"),
        ("style", "mood", "column_variable"),
        ("style", "style", "column_variable"),
    ],
)
async def test_grid_bad_variables_are_invalid_argument(
    server: h.Running, row: str, column: str, field: str
) -> None:
    """A lone, unknown or repeated table variable is INVALID_ARGUMENT naming its field."""
    alice = server.client("alice")
    task = (await alice.tasks.CreateTask(grid_request())).task
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await alice.tasks.GetTaskGrid(
            tasks_pb2.GetTaskGridRequest(task_id=task.id, row_variable=row, column_variable=column)
        )
    found = h.status_details(caught.value)
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT
    assert field in found["fields"]


async def test_grid_of_another_owner_is_not_found(server: h.Running) -> None:
    """Another owner's task is NOT_FOUND, like a missing one; a malformed id is
    INVALID_ARGUMENT naming task_id."""
    alice, bob = server.client("alice"), server.client("bob")
    task = (await alice.tasks.CreateTask(grid_request())).task
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bob.tasks.GetTaskGrid(tasks_pb2.GetTaskGridRequest(task_id=task.id))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await bob.tasks.GetTaskGrid(tasks_pb2.GetTaskGridRequest(task_id="not-a-uuid"))
    found = h.status_details(caught.value)
    assert found["code"] == grpc.StatusCode.INVALID_ARGUMENT and "task_id" in found["fields"]


async def test_watch_with_grid_sends_it_with_newer_versions(
    narrow: h.Running, standard: h.FakeWorker
) -> None:
    """With include_grid, the snapshot carries the grid, and later messages carry a newer
    grid once the task moved; each grid is at least as new as its message's task, and the
    last one counts every subtask succeeded. Without it, no grid is sent."""
    alice = narrow.client("alice")
    request = grid_request(images_per_combination=1)
    task = (await alice.tasks.CreateTask(request)).task
    stream = alice.tasks.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=task.id, include_grid=True), timeout=60
    )
    plain = alice.tasks.WatchTask(tasks_pb2.WatchTaskRequest(task_id=task.id), timeout=60)
    first = await stream.read()
    assert first.snapshot and first.HasField("grid")
    assert first.grid.total.total == 6 and first.grid.version >= first.task.version

    async def run_all() -> None:
        done = 0
        while done < 6:
            for message, job in await standard.fetch(1, wait=1.0):
                await standard.succeed(message, job)
                done += 1

    await run_all()
    last_grid = first.grid
    while (update := await stream.read()) is not grpc.aio.EOF:
        if update.HasField("grid"):
            assert update.grid.version >= update.task.version
            assert update.grid.version > last_grid.version
            last_grid = update.grid
    assert last_grid.total.succeeded == 6
    async for update in plain:
        assert not update.HasField("grid")
