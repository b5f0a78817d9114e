"""Reads that the grid and slice tests share: a two-variable task, every subtask, and a
grid checked against the subtask listing of one moment."""

from __future__ import annotations

from kiln.tasks.v1 import tasks_pb2
from tasks import testing as h


def grid_request(**fields: object) -> tasks_pb2.CreateTaskRequest:
    """`{style} art in {light}`: 3 styles x 2 lights x 2 images = 12 subtasks."""
    request = tasks_pb2.CreateTaskRequest(
        task_name="grid", prompt_template="{style} art in {light}", images_per_combination=2
    )
    request.variables["style"].values.extend(["anime", "oil", "watercolor"])
    request.variables["light"].values.extend(["day", "night"])
    for key, value in fields.items():
        setattr(request, key, value)
    return request


async def all_subtasks(client: h.Client_, task_id: str) -> list[tasks_pb2.Subtask]:
    """Every current subtask, over all pages."""
    found: list[tasks_pb2.Subtask] = []
    token = ""
    while True:
        page = await client.tasks.ListSubtasks(
            tasks_pb2.ListSubtasksRequest(task_id=task_id, page_size=5, page_token=token)
        )
        found += page.subtasks
        token = page.next_page_token
        if not token:
            return found


async def consistent_view(
    client: h.Client_, task_id: str
) -> tuple[tasks_pb2.TaskGrid, list[tasks_pb2.Subtask], tasks_pb2.Task]:
    """A grid, the subtask listing and the task of one moment: read the grid, then the
    rest, then the grid again, until nothing moved in between. Equal grids around the
    listing mean it saw those states: a subtask's state only moves forward, and dispatch
    (pending -> queued) changes no task version, so the versions alone would not tell."""
    request = tasks_pb2.GetTaskGridRequest(
        task_id=task_id, row_variable="style", column_variable="light"
    )
    for _ in range(50):
        before = (await client.tasks.GetTaskGrid(request)).grid
        subtasks = await all_subtasks(client, task_id)
        task = await h.get_task(client, task_id)
        after = (await client.tasks.GetTaskGrid(request)).grid
        if before == after and after.version == task.version:
            return after, subtasks, task
    raise AssertionError("the task never held still for one read")


async def check_step(client: h.Client_, task_id: str) -> tasks_pb2.Task:
    """The grid equals the subtasks' states, and its total the task's counters."""
    grid, subtasks, task = await consistent_view(client, task_id)
    assert h.tally_grid(grid) == h.tally_subtasks(subtasks, ("style", "light"))
    total = grid.total
    assert total.total == task.total_images == len(subtasks)
    assert (total.succeeded, total.failed, total.cancelled, total.running) == (
        task.succeeded_count,
        task.failed_count,
        task.cancelled_count,
        task.running_count,
    )
    return task
