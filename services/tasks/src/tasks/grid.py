"""Progress by variable: a task's current subtasks counted by state for each value of each
variable, and for a chosen pair of variables the two-way table.

One read is one REPEATABLE READ transaction (the task row and one statement with a grouping
set per variable, `store.grid_counts`: one scan of the task's subtasks), so the counts are
of one snapshot and carry its task version; they equal the task's counters. Watchers share
the latest grid of a task (`latest`), so a watch with the grid costs one read per task
version, not one per watcher.
"""

from __future__ import annotations

import collections
import dataclasses

from sqlalchemy.ext.asyncio import AsyncEngine

from kiln.common import errors, principal
from tasks import lifecycle, model, service, store

_SHARED_GRIDS = 256
"""Grids of this many tasks are kept for watchers; the least recently read go first."""


@dataclasses.dataclass
class Counts:
    """Subtasks by state; `held` counts the pending ones held in a paused slice."""

    total: int = 0
    pending: int = 0
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    held: int = 0

    def add(self, state: str, held: bool, count: int) -> None:
        """Counts `count` subtasks in `state`."""
        self.total += count
        if state in lifecycle.STATES:
            setattr(self, state, getattr(self, state) + count)
        if held and state == lifecycle.PENDING:
            self.held += count


@dataclasses.dataclass(frozen=True)
class Table:
    """Two variables crossed: one Counts per (row value, column value), every pair."""

    row_variable: str
    column_variable: str
    row_values: list[str]
    column_values: list[str]
    cells: dict[tuple[str, str], Counts]


@dataclasses.dataclass(frozen=True)
class Grid:
    """A task's counts by variable value, as of task version `version`."""

    task_id: str
    version: int
    total: Counts
    variables: dict[str, dict[str, Counts]]
    """Per variable (by name), per value (in the task's value order)."""
    table: Table | None = None


def check_pair(task: model.Task, row: str, column: str) -> tuple[str, str] | None:
    """The pair to cross, or None for no table; INVALID_ARGUMENT naming `row_variable` or
    `column_variable` for a lone one, an unknown one, or the same one twice."""
    if not row and not column:
        return None
    known = ", ".join(sorted(task.variables)) or "none"
    violations = []
    for field, name, other in (
        ("row_variable", row, "column_variable"),
        ("column_variable", column, "row_variable"),
    ):
        if not name:
            violations.append(errors.FieldViolation(field, f"must be set together with {other}"))
        elif name not in task.variables:
            violations.append(
                errors.FieldViolation(
                    field, f"{errors.echo(name)} is not a variable of the task (it has: {known})"
                )
            )
    if not violations and row == column:
        violations.append(errors.FieldViolation("column_variable", "must differ from row_variable"))
    if violations:
        raise errors.InvalidArgument(violations)
    return row, column


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


async def read(engine: AsyncEngine, task_id: str, pair: tuple[str, str] | None) -> Grid | None:
    """The grid of a task (None when there is no such task), from one snapshot."""
    async with engine.connect() as plain:
        conn = await plain.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            task = await store.get_task(conn, task_id)
            if task is None:
                return None
            names = sorted(task.variables)
            indexes = None if pair is None else (names.index(pair[0]), names.index(pair[1]))
            rows = await store.grid_counts(conn, task_id, names, indexes)
    return assemble(task, pair, rows)


def assemble(
    task: model.Task,
    pair: tuple[str, str] | None,
    rows: list[tuple[dict[str, str], str, bool, int]],
) -> Grid:
    """The Grid of `task` from `store.grid_counts` rows."""
    total = Counts()
    variables = {
        name: {value: Counts() for value in _unique(task.variables[name])}
        for name in sorted(task.variables)
    }
    table: Table | None = None
    if pair is not None:
        row_values = _unique(task.variables[pair[0]])
        column_values = _unique(task.variables[pair[1]])
        cells = {(r, c): Counts() for r in row_values for c in column_values}
        table = Table(pair[0], pair[1], row_values, column_values, cells)
    for values, state, held, count in rows:
        target: Counts | None = None
        if not values:
            target = total
        elif len(values) == 1:
            [(name, value)] = values.items()
            target = variables.get(name, {}).get(value)
        elif table is not None:
            key = (values.get(table.row_variable, ""), values.get(table.column_variable, ""))
            target = table.cells.get(key)
        if target is not None:
            target.add(state, held, count)
    return Grid(task.id, task.version, total, variables, table)


class Grids:
    """GetTaskGrid, and the grids WatchTask sends."""

    def __init__(self, tasks: service.Tasks) -> None:
        self._engine = tasks.rt.engine
        self._latest: collections.OrderedDict[str, Grid] = collections.OrderedDict()

    async def get(self, task_id: str, row: str, column: str) -> Grid:
        """The grid of a task the caller may see, with the table of (row, column)."""
        caller = principal.current()
        task_id = service._check_uuid(task_id, "task_id")
        async with self._engine.connect() as conn:
            task = service._visible(await store.get_task(conn, task_id), task_id, caller)
        pair = check_pair(task, row, column)
        grid = await read(self._engine, task_id, pair)
        if grid is None:
            raise errors.NotFound("task", task_id)
        return grid

    async def latest(self, task_id: str, version: int) -> Grid | None:
        """A grid of the task (no table) at `version` or newer, shared by its watchers;
        the caller checked ownership already."""
        known = self._latest.get(task_id)
        if known is not None and known.version >= version:
            self._latest.move_to_end(task_id)
            return known
        grid = await read(self._engine, task_id, None)
        if grid is None:
            return None
        known = self._latest.get(task_id)
        if known is None or grid.version >= known.version:
            self._latest[task_id] = grid
            self._latest.move_to_end(task_id)
            while len(self._latest) > _SHARED_GRIDS:
                self._latest.popitem(last=False)
        return grid
