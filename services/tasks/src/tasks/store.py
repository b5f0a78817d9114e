"""SQL of tasks and subtasks: every query the RPCs and background loops run.

Functions take an open `AsyncConnection` inside the caller's transaction, so a use case
composes several of them atomically. Counters on the task row are only ever changed
together with the subtask rows they count, in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
import psycopg.rows
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from kiln.common import job_errors
from tasks import lifecycle, model, ranking, readcache

LIVE = lifecycle.LIVE_SQL

SUBTASK_COLUMNS = (
    "id",
    "task_id",
    "idx",
    "owner_id",
    "variable_values",
    "prompt",
    "negative_prompt",
    "ratio",
    "width",
    "height",
    "seed",
    "use_polish",
    "queue",
    "output_format",
    "state",
    "create_time",
)


async def find_by_request_id(
    conn: AsyncConnection, owner_id: str, request_id: str
) -> model.Task | None:
    """The owner's task created with `request_id`, if any."""
    row = (
        (
            await conn.execute(
                text("SELECT * FROM tasks.tasks WHERE owner_id = :o AND request_id = :r"),
                {"o": owner_id, "r": request_id},
            )
        )
        .mappings()
        .first()
    )
    return model.Task.from_row(row) if row else None


async def count_active(conn: AsyncConnection, owner_id: str) -> int:
    """The owner's tasks that have not finished."""
    value = await conn.scalar(
        text(
            "SELECT count(*) FROM tasks.tasks WHERE owner_id = :o "
            "AND state IN ('pending', 'running') AND NOT is_deleted"
        ),
        {"o": owner_id},
    )
    return int(value or 0)


async def insert_task(conn: AsyncConnection, row: dict[str, Any]) -> model.Task:
    """Inserts a task row; raises IntegrityError on a duplicate (owner, request_id)."""
    values = dict(row)
    values["variables"] = json.dumps(values["variables"])
    values["zip_groups"] = json.dumps(values["zip_groups"])
    columns = ", ".join(values)
    params = ", ".join(
        f"CAST(:{k} AS jsonb)" if k in ("variables", "zip_groups") else f":{k}" for k in values
    )
    result = await conn.execute(
        text(f"INSERT INTO tasks.tasks ({columns}) VALUES ({params}) RETURNING *"),  # noqa: S608 - fixed column names
        values,
    )
    return model.Task.from_row(result.mappings().one())


async def copy_subtasks(conn: AsyncConnection, rows: Iterable[Sequence[Any]]) -> None:
    """Bulk-inserts subtask rows (in SUBTASK_COLUMNS order) with COPY: one round trip
    stream instead of one statement per row."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    columns = ", ".join(SUBTASK_COLUMNS)
    async with (
        driver.cursor() as cursor,
        cursor.copy(f"COPY tasks.subtasks ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            await copy.write_row(row)


async def enqueue_pending(conn: AsyncConnection, task_id: str, priority: int) -> int:
    """Adds an outbox row for every pending subtask of the task; returns how many."""
    result = await conn.execute(
        text(
            "INSERT INTO tasks.outbox (subtask_id, task_id, owner_id, queue, priority, "  # noqa: S608
            "attempt, generation, held) "
            "SELECT id, task_id, owner_id, queue, :p, attempt, generation, held "
            "FROM tasks.subtasks WHERE task_id = CAST(:t AS uuid) "
            f"AND state IN {lifecycle.DISPATCH_FROM_SQL} "
            "AND NOT superseded ORDER BY idx"
        ),
        {"t": task_id, "p": priority},
    )
    return int(result.rowcount or 0)


async def get_task(
    conn: AsyncConnection,
    task_id: str,
    *,
    lock: bool = False,
    reads: readcache.TaskReads | None = None,
) -> model.Task | None:
    """One task by id (deleted ones too), optionally locked for update; through `reads`
    (a row of a version seen before is not converted again) when given."""
    if reads is not None and not lock:
        rows = await driver_rows(
            conn, "SELECT * FROM tasks.tasks WHERE id = CAST(%(id)s AS uuid)", {"id": task_id}
        )
        return reads.task(rows[0]) if rows else None
    suffix = " FOR UPDATE" if lock else ""
    row = (
        (
            await conn.execute(
                text(f"SELECT * FROM tasks.tasks WHERE id = CAST(:id AS uuid){suffix}"),  # noqa: S608
                {"id": task_id},
            )
        )
        .mappings()
        .first()
    )
    return model.Task.from_row(row) if row else None


async def driver_rows(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[Any]:
    """The rows (dicts) of one statement (psycopg placeholders) run straight on the psycopg
    connection under `conn`, for the hot reads: SQLAlchemy's statement layer (a greenlet
    hop per statement, its result wrapping) costs more than the query on a 2-core machine.
    The connection's transaction state is the driver's as always (autocommit under
    `_reading`); a broken connection is invalidated, so the pool drops it."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None  # a checked-out connection always has one
    try:
        async with driver.cursor(row_factory=psycopg.rows.dict_row) as cursor:
            await cursor.execute(sql, params)
            rows: list[Any] = await cursor.fetchall()
    except psycopg.OperationalError:
        await conn.invalidate()
        raise
    return rows


def escape_like(value: str) -> str:
    """`value` as a literal ILIKE pattern fragment: %, _ and \\ lose their meaning."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def list_tasks(
    conn: AsyncConnection,
    *,
    owner_id: str | None,
    states: Sequence[str],
    tag: str,
    search: str,
    after: tuple[dt.datetime, str] | None,
    limit: int,
    reads: readcache.TaskReads | None = None,
) -> list[model.Task]:
    """Non-deleted tasks newest first, keyset-paged on (create_time, id); through `reads`
    when given (see `get_task`)."""
    where = ["NOT is_deleted"]
    params: dict[str, Any] = {"limit": limit}
    if owner_id is not None:
        where.append("owner_id = %(owner)s")
        params["owner"] = owner_id
    if states:
        where.append("state = ANY(CAST(%(states)s AS text[]))")
        params["states"] = list(states)
    if tag:
        where.append("tags @> ARRAY[CAST(%(tag)s AS text)]")
        params["tag"] = tag
    if search:
        where.append(
            "(task_name ILIKE %(pattern)s ESCAPE '\\' OR EXISTS "
            "(SELECT 1 FROM unnest(tags) AS tg WHERE tg ILIKE %(pattern)s ESCAPE '\\'))"
        )
        params["pattern"] = f"%{escape_like(search)}%"
    if after is not None:
        where.append("(create_time, id) < (%(after_time)s, CAST(%(after_id)s AS uuid))")
        params["after_time"], params["after_id"] = after
    sql = (
        f"SELECT * FROM tasks.tasks WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments
        "ORDER BY create_time DESC, id DESC LIMIT %(limit)s"
    )
    rows = await driver_rows(conn, sql, params)
    if reads is None:
        return [model.Task.from_row(r) for r in rows]
    return [reads.task(r) for r in rows]


async def list_subtasks(
    conn: AsyncConnection,
    task_id: str,
    *,
    states: Sequence[str],
    variables: dict[str, str],
    after_index: int,
    limit: int,
) -> list[model.Subtask]:
    """Current (not superseded) subtasks of a task in index order, after `after_index`."""
    where = ["task_id = CAST(:task AS uuid)", "NOT superseded", "idx > :after"]
    params: dict[str, Any] = {"task": task_id, "after": after_index, "limit": limit}
    if states:
        where.append("state = ANY(CAST(:states AS text[]))")
        params["states"] = list(states)
    if variables:
        where.append("variable_values @> CAST(:vars AS jsonb)")
        params["vars"] = json.dumps(variables)
    sql = (
        f"SELECT * FROM tasks.subtasks WHERE {' AND '.join(where)} "  # noqa: S608 - fixed fragments
        "ORDER BY idx LIMIT :limit"
    )
    rows = (await conn.execute(text(sql), params)).mappings().all()
    return [model.Subtask.from_row(r) for r in rows]


async def get_subtask(conn: AsyncConnection, subtask_id: str) -> model.Subtask | None:
    """One subtask by id."""
    row = (
        (
            await conn.execute(
                text("SELECT * FROM tasks.subtasks WHERE id = CAST(:id AS uuid)"),
                {"id": subtask_id},
            )
        )
        .mappings()
        .first()
    )
    return model.Subtask.from_row(row) if row else None


async def changed_subtasks(
    conn: AsyncConnection, task_id: str, after_version: int, up_to: int
) -> list[model.Subtask]:
    """Subtasks whose last change has a task version in (after_version, up_to]."""
    rows = (
        (
            await conn.execute(
                text(
                    "SELECT * FROM tasks.subtasks WHERE task_id = CAST(:t AS uuid) "
                    "AND changed_version > :a AND changed_version <= :b "
                    "ORDER BY changed_version, idx"
                ),
                {"t": task_id, "a": after_version, "b": up_to},
            )
        )
        .mappings()
        .all()
    )
    return [model.Subtask.from_row(r) for r in rows]


async def bump_task(
    conn: AsyncConnection,
    task_id: str,
    *,
    succeeded: int = 0,
    failed: int = 0,
    cancelled: int = 0,
    running: int = 0,
    started: bool = False,
) -> model.Task:
    """Applies counter deltas and bumps the version; returns the task after the change."""
    row = (
        (
            await conn.execute(
                text(
                    "UPDATE tasks.tasks SET succeeded_count = succeeded_count + :s, "
                    "failed_count = failed_count + :f, cancelled_count = cancelled_count + :c, "
                    "running_count = GREATEST(0, running_count + :r), "
                    "start_time = CASE WHEN CAST(:started AS boolean) "
                    "THEN COALESCE(start_time, now()) ELSE start_time END, "
                    "version = version + 1, update_time = now() "
                    "WHERE id = CAST(:id AS uuid) RETURNING *"
                ),
                {
                    "id": task_id,
                    "s": succeeded,
                    "f": failed,
                    "c": cancelled,
                    "r": running,
                    "started": started,
                },
            )
        )
        .mappings()
        .one()
    )
    return model.Task.from_row(row)


async def stamp_subtasks(conn: AsyncConnection, subtask_ids: Sequence[str], version: int) -> None:
    """Records that these subtasks changed at task version `version` (WatchTask reads it)."""
    if subtask_ids:
        await conn.execute(
            text(
                "UPDATE tasks.subtasks SET changed_version = :v "
                "WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"v": version, "ids": list(subtask_ids)},
        )


_REFRESH_STATE = """
WITH old AS (
    SELECT id, finish_time AS old_finish FROM tasks.tasks
    WHERE id = ANY(CAST(:ids AS uuid[])) ORDER BY id FOR UPDATE
), derived AS (
    SELECT t.id,
        CASE
            WHEN t.state = 'cancelled' THEN 'cancelled'
            WHEN t.succeeded_count + t.failed_count + t.cancelled_count >= t.total_images THEN
                CASE
                    WHEN t.failed_count + t.cancelled_count = 0 THEN 'succeeded'
                    WHEN t.succeeded_count = 0 AND t.failed_count = 0 THEN 'cancelled'
                    WHEN t.succeeded_count = 0 THEN 'failed'
                    ELSE 'partially_failed'
                END
            WHEN t.start_time IS NOT NULL THEN 'running'
            ELSE 'pending'
        END AS state,
        t.succeeded_count + t.failed_count + t.cancelled_count >= t.total_images AS complete
    FROM tasks.tasks t JOIN old ON old.id = t.id
)
UPDATE tasks.tasks t SET
    state = d.state,
    finish_time = CASE WHEN d.complete THEN COALESCE(t.finish_time, now()) ELSE NULL END
FROM derived d, old
WHERE t.id = d.id AND old.id = t.id
RETURNING t.*, (old.old_finish IS NULL AND d.complete) AS finished_now
"""


async def refresh_state(
    conn: AsyncConnection, task_ids: Iterable[str]
) -> list[tuple[model.Task, bool]]:
    """Derives each task's state and finish time from its counters (call after bump_task in
    the same transaction); returns the tasks and whether each just finished."""
    ids = sorted(set(task_ids))
    if not ids:
        return []
    rows = (await conn.execute(text(_REFRESH_STATE), {"ids": ids})).mappings().all()
    return [(model.Task.from_row(r), bool(r["finished_now"])) for r in rows]


def slice_condition(variables: dict[str, str] | None, params: dict[str, Any]) -> str:
    """A WHERE fragment keeping the subtasks whose values include `variables` (all of them,
    the GIN index on variable_values serves it); "" for no filter. Adds its parameter."""
    if not variables:
        return ""
    params["slice"] = json.dumps(variables, ensure_ascii=False)
    return " AND variable_values @> CAST(:slice AS jsonb)"


async def cancel_waiting(
    conn: AsyncConnection, task_id: str, variables: dict[str, str] | None = None
) -> list[str]:
    """Drops the task's unsent outbox rows and cancels its pending and queued subtasks (of
    the slice `variables` only, when given); returns the cancelled subtask ids. Outbox rows
    are locked before subtasks, as the dispatcher locks them."""
    params: dict[str, Any] = {"t": task_id}
    where = slice_condition(variables, params)
    sql = "DELETE FROM tasks.outbox WHERE task_id = CAST(:t AS uuid) AND sent_time IS NULL"
    if where:
        sql += (
            " AND subtask_id IN (SELECT id FROM tasks.subtasks "  # noqa: S608 - fixed fragments
            f"WHERE task_id = CAST(:t AS uuid) AND NOT superseded{where})"
        )
    await conn.execute(text(sql), params)
    params["m"] = "the slice was cancelled" if variables else "the task was cancelled"
    sql = (
        f"UPDATE tasks.subtasks SET state = {lifecycle.sql(lifecycle.CANCELLED)}, "  # noqa: S608 - fixed fragments
        f"finish_time = now(), error_type = '{job_errors.CANCELLED}', error_message = :m "
        f"WHERE task_id = CAST(:t AS uuid) AND state IN {lifecycle.CANCEL_SQL} "
        f"AND NOT superseded{where} RETURNING id"
    )
    rows = await conn.execute(text(sql), params)
    return [str(r[0]) for r in rows]


async def mark_cancelled(conn: AsyncConnection, task_id: str) -> None:
    """Sets the task's state to cancelled (its counters follow from the subtasks)."""
    await conn.execute(
        text("UPDATE tasks.tasks SET state = 'cancelled' WHERE id = CAST(:t AS uuid)"),
        {"t": task_id},
    )


async def retry_subtasks(
    conn: AsyncConnection, task_id: str, variables: dict[str, str] | None = None
) -> tuple[int, int, list[str]]:
    """Supersedes the failed and cancelled subtasks (of the slice `variables` only, when
    given) with new pending rows (retried_from = old id, next attempt number, held as the
    old one was); returns (failed, cancelled, new ids)."""
    params: dict[str, Any] = {"t": task_id}
    where = slice_condition(variables, params)
    sql = (
        "UPDATE tasks.subtasks SET superseded = true WHERE task_id = CAST(:t AS uuid) "  # noqa: S608 - fixed fragments
        f"AND state IN {lifecycle.RETRYABLE_SQL} AND NOT superseded{where} RETURNING id, state"
    )
    old = (await conn.execute(text(sql), params)).all()
    if not old:
        return 0, 0, []
    new = await conn.execute(
        text(
            "INSERT INTO tasks.subtasks (id, task_id, idx, owner_id, variable_values, prompt, "  # noqa: S608
            "negative_prompt, ratio, width, height, seed, use_polish, queue, output_format, "
            "state, attempt, retried_from, held) "
            "SELECT gen_random_uuid(), task_id, idx, owner_id, variable_values, prompt, "
            "negative_prompt, ratio, width, height, seed, use_polish, queue, output_format, "
            f"{lifecycle.sql(lifecycle.PENDING)}, attempt + 1, id, held FROM tasks.subtasks "
            "WHERE id = ANY(CAST(:ids AS uuid[])) RETURNING id"
        ),
        {"ids": [str(r[0]) for r in old]},
    )
    failed = sum(1 for r in old if r[1] == lifecycle.FAILED)
    return failed, len(old) - failed, [str(r[0]) for r in new]


async def reopen_task(conn: AsyncConnection, task_id: str, failed: int, cancelled: int) -> None:
    """After a retry: the superseded rows leave the counters and the task runs again."""
    await conn.execute(
        text(
            "UPDATE tasks.tasks SET failed_count = failed_count - :f, "
            "cancelled_count = cancelled_count - :c, finish_time = NULL, "
            "state = CASE WHEN start_time IS NULL THEN 'pending' ELSE 'running' END "
            "WHERE id = CAST(:t AS uuid)"
        ),
        {"t": task_id, "f": failed, "c": cancelled},
    )


async def soft_delete(conn: AsyncConnection, task_id: str) -> None:
    """Hides the task from lists."""
    await conn.execute(
        text(
            "UPDATE tasks.tasks SET is_deleted = true, version = version + 1, "
            "update_time = now() WHERE id = CAST(:t AS uuid) AND NOT is_deleted"
        ),
        {"t": task_id},
    )


async def queue_position(conn: AsyncConnection, task: model.Task, aging: float) -> int:
    """Jobs of other tasks in the task's queue ahead of its next one: those published and
    not started (before its own first queued one, if any), plus, while all of it waits in
    the outbox, the waiting rows the fair dispatch order puts first (`ranking`)."""
    # Plain statements: right after a bulk insert the planner's statistics are stale,
    # and a combined query can pick a nested loop that re-runs the inner aggregate.
    first_queued = await conn.scalar(
        text(
            "SELECT min(queue_time) FROM tasks.subtasks WHERE task_id = CAST(:t AS uuid) "
            "AND state = 'queued'"
        ),
        {"t": task.id},
    )
    queued = await conn.scalar(
        text(
            "SELECT count(*) FROM tasks.subtasks WHERE queue = :q AND state = 'queued' "
            "AND task_id <> CAST(:t AS uuid) AND (CAST(:fq AS timestamptz) IS NULL "
            "OR queue_time <= CAST(:fq AS timestamptz))"
        ),
        {"q": task.queue, "fq": first_queued, "t": task.id},
    )
    position = int(queued or 0)
    if first_queued is None:
        position += await ranking.waiting_ahead(conn, task, aging) or 0
    return position


async def set_paused(conn: AsyncConnection, task_id: str, paused: bool) -> None:
    """Pauses or resumes the task's dispatch. A resumed task's wait (for priority aging)
    starts again: the paused time was not spent waiting for a turn."""
    await conn.execute(
        text(
            "UPDATE tasks.tasks SET paused = :p, dispatch_time = CASE WHEN :p THEN "
            "dispatch_time ELSE now() END WHERE id = CAST(:t AS uuid)"
        ),
        {"t": task_id, "p": paused},
    )


async def set_priority(conn: AsyncConnection, task_id: str, priority: int) -> None:
    """Changes the task's priority and that of its undispatched outbox rows."""
    await conn.execute(
        text("UPDATE tasks.tasks SET priority = :p WHERE id = CAST(:t AS uuid)"),
        {"t": task_id, "p": priority},
    )
    await conn.execute(
        text(
            "UPDATE tasks.outbox SET priority = :p WHERE task_id = CAST(:t AS uuid) "
            "AND sent_time IS NULL"
        ),
        {"t": task_id, "p": priority},
    )


async def mean_render_seconds(conn: AsyncConnection, window_seconds: float) -> dict[str, float]:
    """Mean render time per queue over recently succeeded subtasks."""
    rows = await conn.execute(
        text(
            "SELECT queue, avg(render_ms) FROM tasks.subtasks WHERE state = 'succeeded' "
            "AND finish_time > now() - make_interval(secs => :w) AND render_ms IS NOT NULL "
            "GROUP BY queue"
        ),
        {"w": window_seconds},
    )
    return {str(r[0]): float(r[1]) / 1000.0 for r in rows if r[1] is not None}


async def enqueue_webhook(
    conn: AsyncConnection, delivery_id: str, task_id: str, event: str, payload: str
) -> None:
    """Records a webhook delivery to be sent (in the transaction of the change it reports)."""
    await conn.execute(
        text(
            "INSERT INTO tasks.webhook_deliveries (id, task_id, event, payload) "
            "VALUES (CAST(:id AS uuid), CAST(:t AS uuid), :e, :p)"
        ),
        {"id": delivery_id, "t": task_id, "e": event, "p": payload},
    )


async def set_held(
    conn: AsyncConnection, task_id: str, variables: dict[str, str] | None, held: bool
) -> list[str]:
    """Holds (or releases) the task's current subtasks of the slice `variables` (every one
    when None) and their unsent outbox rows; returns the ids of the subtasks that changed.
    Outbox rows are locked before subtasks, as the dispatcher locks them."""
    params: dict[str, Any] = {"t": task_id, "h": held}
    where = slice_condition(variables, params)
    sql = (
        "UPDATE tasks.outbox SET held = :h WHERE task_id = CAST(:t AS uuid) "  # noqa: S608 - fixed fragments
        "AND sent_time IS NULL AND held <> :h AND subtask_id IN (SELECT id FROM tasks.subtasks "
        f"WHERE task_id = CAST(:t AS uuid) AND NOT superseded{where})"
    )
    await conn.execute(text(sql), params)
    sql = (
        "UPDATE tasks.subtasks SET held = :h WHERE task_id = CAST(:t AS uuid) "  # noqa: S608 - fixed fragments
        f"AND NOT superseded AND held <> :h{where} RETURNING id"
    )
    rows = await conn.execute(text(sql), params)
    return [str(r[0]) for r in rows]


async def grid_counts(
    conn: AsyncConnection, task_id: str, names: Sequence[str], pair: tuple[int, int] | None
) -> list[tuple[dict[str, str], str, bool, int]]:
    """A task's current subtasks counted by state and held, in one scan: in total, per
    value of each variable of `names` and, with `pair` (two indexes into `names`), per
    pair of values. Rows are (values, state, held, count), `values` being {variable:
    value} of the grouped variables: none for the total, one, or the pair's two."""
    params: dict[str, Any] = {"t": task_id}
    columns = []
    for i, name in enumerate(names):
        params[f"n{i}"] = name
        columns.append(f"variable_values ->> CAST(:n{i} AS text) AS v{i}")
    sets = ["(state, held)", *(f"(v{i}, state, held)" for i in range(len(names)))]
    if pair is not None:
        sets.append(f"(v{pair[0]}, v{pair[1]}, state, held)")
    flags = "".join(f", GROUPING(v{i}) AS g{i}" for i in range(len(names)))
    values = "".join(f", v{i}" for i in range(len(names)))
    inner = ", ".join([*columns, "state", "held"])
    sql = (
        f"SELECT state, held, count(*) AS n{values}{flags} FROM (SELECT {inner} "  # noqa: S608 - fixed fragments
        "FROM tasks.subtasks WHERE task_id = CAST(:t AS uuid) AND NOT superseded) AS s "
        f"GROUP BY GROUPING SETS ({', '.join(sets)})"
    )
    found = []
    for row in (await conn.execute(text(sql), params)).mappings():
        grouped = {name: str(row[f"v{i}"]) for i, name in enumerate(names) if not row[f"g{i}"]}
        found.append((grouped, str(row["state"]), bool(row["held"]), int(row["n"])))
    return found


async def enqueue_subtasks(conn: AsyncConnection, subtask_ids: Sequence[str], priority: int) -> int:
    """Adds an outbox row for each of these pending subtasks (a slice's retries, while the
    task's other pending subtasks already have theirs); returns how many."""
    if not subtask_ids:
        return 0
    result = await conn.execute(
        text(
            "INSERT INTO tasks.outbox (subtask_id, task_id, owner_id, queue, priority, "  # noqa: S608 - fixed fragments
            "attempt, generation, held) "
            "SELECT id, task_id, owner_id, queue, :p, attempt, generation, held "
            "FROM tasks.subtasks WHERE id = ANY(CAST(:ids AS uuid[])) "
            f"AND state IN {lifecycle.DISPATCH_FROM_SQL} "
            "ORDER BY idx"
        ),
        {"ids": list(subtask_ids), "p": priority},
    )
    return int(result.rowcount or 0)
