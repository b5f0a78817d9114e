"""Who goes next and how many go: the fair dispatch order and the dispatch window.

The window. Jobs on the stream run in stream order, so the order can only change while a
job still waits in the outbox. A queue therefore gets only as many jobs in flight (queued
or running) as its live workers can run now, plus a margin that covers the time a job
needs to reach a worker (`lead` seconds of the queue's measured throughput), so fast
renderers are not starved between rounds. With no live worker a few jobs are dispatched,
so a worker that starts begins at once.

The order, of the waiting (unsent, not paused) rows of one queue:
  1. effective priority, highest first: the task's priority plus one level per `aging`
     seconds the task has waited since it last had a job dispatched (or was created);
  2. the owner's turn: jobs the owner has in flight plus the row's rank among the owner's
     waiting rows, lowest first. An owner with nothing in flight goes before one with
     jobs running, whatever the ids or ages (round robin across owners); between equal
     turns, the owner whose latest job in flight was sent longest ago (ties broken by row
     id instead favoured the oldest task's owner, round after round);
  3. the task's turn, the same within one owner: a small task of an owner is not stuck
     behind the owner's own big one;
  4. the outbox id (age).
Turns count jobs in flight, so the order holds from one round to the next, not only
within one pick.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tasks import lifecycle, model

_FASTEST_RENDER = 0.001
"""A render time floor, so an instant renderer gives a large, finite margin."""


def window(slots: int, render_seconds: float, *, lead: float, unserved: int, maximum: int) -> int:
    """Jobs of a queue allowed in flight: the live worker `slots` plus the jobs they render
    in `lead` seconds at `render_seconds` each; `unserved` when no worker is live; at most
    `maximum`, at least 1."""
    if slots <= 0:
        return max(1, min(unserved, maximum))
    margin = math.ceil(slots * lead / max(render_seconds, _FASTEST_RENDER))
    return max(1, min(maximum, slots + margin))


def _aging(column: str) -> str:
    # greatest() skips NULLs: a task never dispatched waits from its row's creation.
    return (
        "CASE WHEN CAST(:aging AS float8) > 0 THEN CAST(floor(extract(epoch FROM now() - "
        f"greatest(o.create_time, {column})) / CAST(:aging AS float8)) AS integer) ELSE 0 END"
    )


# The ranked waiting rows of one queue (parameters :q and :aging); see the module docstring.
_RANKED = f"""
WITH flight AS (
    SELECT task_id, owner_id, count(*) AS n, max(queue_time) AS last_sent FROM tasks.subtasks
    WHERE queue = :q AND state IN {lifecycle.IN_FLIGHT_SQL} GROUP BY task_id, owner_id
), owner_flight AS (
    SELECT owner_id, sum(n) AS n, max(last_sent) AS last_sent FROM flight GROUP BY owner_id
), waiting AS (
    SELECT o.id, o.owner_id, o.task_id, o.priority + {_aging("t.dispatch_time")} AS eff
    FROM tasks.outbox o JOIN tasks.tasks t ON t.id = o.task_id
    WHERE o.queue = :q AND o.sent_time IS NULL AND o.generation = 0 AND NOT t.paused
), task_turns AS (
    SELECT w.*, COALESCE(f.n, 0)
        + row_number() OVER (PARTITION BY w.task_id ORDER BY w.id) AS task_turn
    FROM waiting w LEFT JOIN flight f ON f.task_id = w.task_id
), ranked AS (
    SELECT tt.*, COALESCE(fo.n, 0) + row_number() OVER (
        PARTITION BY tt.owner_id, tt.eff ORDER BY tt.task_turn, tt.id) AS owner_turn,
        COALESCE(fo.last_sent, '-infinity') AS owner_last
    FROM task_turns tt LEFT JOIN owner_flight fo ON fo.owner_id = tt.owner_id
)
"""  # noqa: S608 - fixed fragments, no input

ORDER = "eff DESC, owner_turn, owner_last, task_turn, id"

PICK = f"""
{_RANKED}, picked AS (
    SELECT id, eff, owner_turn, owner_last, task_turn FROM ranked ORDER BY {ORDER} LIMIT :limit
)
SELECT o.id, o.subtask_id, o.attempt, o.generation, s.task_id, s.owner_id, s.queue, s.idx,
    s.prompt, s.negative_prompt, s.width, s.height, s.seed, s.use_polish, s.output_format,
    s.ratio, s.create_time, t.reuse_results, t.share_results
FROM tasks.outbox o JOIN picked p ON p.id = o.id JOIN tasks.subtasks s ON s.id = o.subtask_id
    JOIN tasks.tasks t ON t.id = s.task_id
WHERE o.sent_time IS NULL
ORDER BY p.eff DESC, p.owner_turn, p.owner_last, p.task_turn, o.id
FOR UPDATE OF o SKIP LOCKED
"""  # noqa: S608 - fixed fragments, no input
"""The next `:limit` rows of queue `:q` in fair order, locked, with their subtasks."""

_AHEAD = f"""
{_RANKED}, mine AS (
    SELECT eff, owner_turn, owner_last, task_turn, id FROM ranked
    WHERE task_id = CAST(:t AS uuid) ORDER BY {ORDER} LIMIT 1
)
SELECT (SELECT count(*) FROM ranked r, mine m
        WHERE (-r.eff, r.owner_turn, r.owner_last, r.task_turn, r.id)
            < (-m.eff, m.owner_turn, m.owner_last, m.task_turn, m.id)),
    (SELECT count(*) FROM mine)
"""  # noqa: S608 - fixed fragments, no input


async def fair_order(
    conn: AsyncConnection, queue: str, limit: int, aging: float
) -> list[dict[str, Any]]:
    """The ids, tasks and owners of the next `limit` waiting rows of `queue`, in dispatch
    order (no locks; for tests and diagnostics)."""
    sql = f"{_RANKED} SELECT id, task_id, owner_id, eff FROM ranked ORDER BY {ORDER} LIMIT :limit"  # noqa: S608 - fixed fragments
    params = {"q": queue, "limit": limit, "aging": aging}
    return [dict(r) for r in (await conn.execute(text(sql), params)).mappings()]


async def waiting_ahead(conn: AsyncConnection, task: model.Task, aging: float) -> int | None:
    """Waiting rows of other tasks that the fair order puts before the task's next one;
    None when the task has no waiting row (paused, or all dispatched)."""
    params = {"q": task.queue, "t": task.id, "aging": aging}
    ahead, found = (await conn.execute(text(_AHEAD), params)).one()
    return int(ahead) if found else None
