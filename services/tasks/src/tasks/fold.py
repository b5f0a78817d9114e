"""Folding subtask events into the database: fenced, idempotent, counted exactly.

Events of a batch are first collapsed per (subtask, attempt): the first terminal event wins,
and the newest non-terminal one by (delivery, sequence) carries progress. Each collapsed
change is one conditional UPDATE that matches only while the subtask is not terminal, the
attempt is the subtask's current one (a zombie worker's late events change nothing), and,
for non-terminal changes, the (delivery, sequence) is newer than the last one folded. The
task counters change in the same transaction, by the transitions that really happened, so
they always equal the number of terminal subtasks however often an event is delivered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from kiln.common import job_errors
from kiln.imagegen.v1 import jobs_pb2
from tasks import lifecycle, model, store, webhooks

K = jobs_pb2.SubtaskEventKind


@dataclasses.dataclass
class Change:
    """The net effect of some events on one attempt of one subtask."""

    subtask_id: str
    attempt: int
    terminal: str | None = None
    delivery: int = 0
    sequence: int = 0
    start_time: dt.datetime | None = None
    finish_time: dt.datetime | None = None
    worker_id: str | None = None
    step: int | None = None
    total_steps: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    result: jobs_pb2.JobResult | None = None


def _time(event: jobs_pb2.SubtaskEvent) -> dt.datetime:
    if event.HasField("time"):
        return event.time.ToDatetime(tzinfo=dt.UTC)
    return dt.datetime.now(dt.UTC)


_UUID_TEXT_LEN = 36
"""The canonical 8-4-4-4-12 form, the only one workers send."""


def event_problem(event: jobs_pb2.SubtaskEvent) -> str | None:
    """Why `event` can never fold (whatever the database holds), or None when it may.

    Checked before a batch is folded, so a malformed event is set aside on its own instead
    of failing the statement that carries its whole batch.
    """
    problem = subtask_id_problem(event.subtask_id)
    if problem is not None:
        return problem
    if event.attempt < 1:
        return "attempt must be at least 1"
    try:
        _time(event)
    except (ValueError, OverflowError):
        return "time is out of range"
    if any("\x00" in text for text in _texts(event)):
        return "a text field contains U+0000"
    return None


def subtask_id_problem(subtask_id: str) -> str | None:
    """Why `subtask_id` cannot name a subtask row, or None."""
    try:
        uuid.UUID(subtask_id)
    except ValueError:
        return "subtask_id is not a UUID"
    if len(subtask_id) != _UUID_TEXT_LEN:
        return "subtask_id is not a UUID in canonical form"
    return None


def _texts(event: jobs_pb2.SubtaskEvent) -> list[str]:
    result = event.result
    return [
        event.worker_id,
        event.error.type,
        event.error.message,
        result.object_name,
        result.thumbnail_object_name,
        result.content_type,
        result.sha256,
        result.model,
        result.polished_prompt,
        result.reused_from_subtask_id,
    ]


def collapse(events: Iterable[jobs_pb2.SubtaskEvent]) -> list[Change]:
    """The changes of a batch of events, in order of first appearance."""
    changes: dict[tuple[str, int], Change] = {}
    for event in events:
        key = (event.subtask_id, event.attempt)
        change = changes.get(key)
        if change is None:
            change = changes[key] = Change(event.subtask_id, event.attempt)
        _merge(change, event)
    return list(changes.values())


def _merge(change: Change, event: jobs_pb2.SubtaskEvent) -> None:
    when = _time(event)
    if event.worker_id:
        change.worker_id = event.worker_id
    if change.start_time is None or when < change.start_time:
        change.start_time = when
    newer = (event.delivery, event.sequence) > (change.delivery, change.sequence)
    if newer:
        change.delivery, change.sequence = event.delivery, event.sequence
    if change.terminal is not None:
        return  # the first terminal event decides
    kind = event.kind
    if kind == K.SUBTASK_EVENT_KIND_PROGRESS and newer:
        change.step, change.total_steps = event.step, event.total_steps
    elif kind == K.SUBTASK_EVENT_KIND_FAILED:
        change.error_type = event.error.type or job_errors.FAILED
        change.error_message = event.error.message
        if not event.will_retry:
            change.terminal, change.finish_time = model.FAILED, when
    elif kind == K.SUBTASK_EVENT_KIND_SUCCEEDED:
        change.terminal, change.finish_time = model.SUCCEEDED, when
        change.result = event.result
        change.error_type = change.error_message = None
    elif kind == K.SUBTASK_EVENT_KIND_CANCELLED:
        change.terminal, change.finish_time = model.CANCELLED, when
        change.error_type = event.error.type or job_errors.CANCELLED
        change.error_message = event.error.message or "the task was cancelled"


# One statement folds a whole batch: the changes arrive as parallel arrays, the target rows
# are locked in id order (no deadlocks between replicas), and each row's previous state is
# returned so the counters move by real transitions only.
_COLUMNS = (
    ("id", "uuid"),
    ("attempt", "integer"),
    ("state", "text"),
    ("terminal", "boolean"),
    ("start_time", "timestamptz"),
    ("finish_time", "timestamptz"),
    ("worker_id", "text"),
    ("step", "integer"),
    ("total_steps", "integer"),
    ("error_type", "text"),
    ("error_message", "text"),
    ("object_name", "text"),
    ("thumbnail", "text"),
    ("content_type", "text"),
    ("result_width", "integer"),
    ("result_height", "integer"),
    ("size_bytes", "bigint"),
    ("sha256", "text"),
    ("model", "text"),
    ("polished", "text"),
    ("render_ms", "integer"),
    ("reused_from", "text"),
    ("delivery", "integer"),
    ("sequence", "integer"),
)
_UNNEST = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _COLUMNS)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_NEWER = "((s.last_delivery, s.last_sequence) < (c.delivery, c.sequence))"

_APPLY_SQL = f"""
WITH c AS (
    SELECT * FROM unnest({_UNNEST}) AS c({_NAMES})
), old AS (
    SELECT s.id, s.state AS old_state FROM tasks.subtasks s
    WHERE s.id IN (SELECT id FROM c) ORDER BY s.id FOR UPDATE
)
UPDATE tasks.subtasks s SET
    state = c.state,
    start_time = COALESCE(s.start_time, c.start_time),
    finish_time = CASE WHEN c.terminal THEN c.finish_time ELSE s.finish_time END,
    worker_id = COALESCE(c.worker_id, s.worker_id),
    step = CASE WHEN c.step IS NOT NULL AND {_NEWER} THEN c.step ELSE s.step END,
    total_steps = CASE WHEN c.total_steps IS NOT NULL AND {_NEWER}
        THEN c.total_steps ELSE s.total_steps END,
    error_type = CASE WHEN c.state = {lifecycle.sql(lifecycle.SUCCEEDED)} THEN NULL
        ELSE COALESCE(c.error_type, s.error_type) END,
    error_message = CASE WHEN c.state = {lifecycle.sql(lifecycle.SUCCEEDED)} THEN NULL
        ELSE COALESCE(c.error_message, s.error_message) END,
    object_name = COALESCE(c.object_name, s.object_name),
    thumbnail_object_name = COALESCE(c.thumbnail, s.thumbnail_object_name),
    content_type = COALESCE(c.content_type, s.content_type),
    result_width = COALESCE(c.result_width, s.result_width),
    result_height = COALESCE(c.result_height, s.result_height),
    size_bytes = COALESCE(c.size_bytes, s.size_bytes),
    sha256 = COALESCE(c.sha256, s.sha256),
    model = COALESCE(c.model, s.model),
    polished_prompt = COALESCE(c.polished, s.polished_prompt),
    render_ms = COALESCE(c.render_ms, s.render_ms),
    reused_from = COALESCE(c.reused_from, s.reused_from),
    last_delivery = CASE WHEN {_NEWER} THEN c.delivery ELSE s.last_delivery END,
    last_sequence = CASE WHEN {_NEWER} THEN c.sequence ELSE s.last_sequence END,
    last_seen = now()
FROM c, old
WHERE s.id = c.id AND old.id = s.id AND s.attempt = c.attempt AND NOT s.superseded
    AND s.state IN {lifecycle.REPORT_FROM_SQL}
    AND (c.terminal OR {_NEWER})
RETURNING s.id, s.task_id, old.old_state, s.state, s.idx
"""  # noqa: S608 - only the fixed column and state names above are interpolated


def _params(change: Change) -> dict[str, Any]:
    result = change.result
    params: dict[str, Any] = {
        "id": change.subtask_id,
        "attempt": change.attempt,
        "state": change.terminal or model.RUNNING,
        "terminal": change.terminal is not None,
        "start_time": change.start_time,
        "finish_time": change.finish_time,
        "worker_id": change.worker_id,
        "step": change.step,
        "total_steps": change.total_steps,
        "error_type": change.error_type,
        "error_message": change.error_message,
        "delivery": change.delivery,
        "sequence": change.sequence,
        "object_name": None,
        "thumbnail": None,
        "content_type": None,
        "result_width": None,
        "result_height": None,
        "size_bytes": None,
        "sha256": None,
        "model": None,
        "polished": None,
        "render_ms": None,
        "reused_from": None,
    }
    if result is not None:
        params.update(
            object_name=result.object_name or None,
            thumbnail=result.thumbnail_object_name or None,
            content_type=result.content_type or None,
            result_width=result.width or None,
            result_height=result.height or None,
            size_bytes=result.size_bytes,
            sha256=result.sha256 or None,
            model=result.model or None,
            polished=result.polished_prompt or None,
            render_ms=result.render_duration.ToMilliseconds()
            if result.HasField("render_duration")
            else None,
            reused_from=result.reused_from_subtask_id or None,
        )
    return params


@dataclasses.dataclass
class TaskDelta:
    """Net changes to one task's counters from a set of subtask transitions."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    started: bool = False
    subtasks: list[str] = dataclasses.field(default_factory=list)
    finished: list[tuple[str, int, str]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Outcome:
    """What a fold changed: the new version of each changed task, and whether any subtask
    left the in-flight window or any webhook was recorded."""

    versions: dict[str, int] = dataclasses.field(default_factory=dict)
    ended: int = 0
    webhooks: int = 0


# Task rows first, in id order, then subtask rows in id order: the order CancelTask and
# RetryTask take them in (task, then its subtasks), so a fold and a cancel of the same task
# wait for each other instead of deadlocking.
_LOCK_TASKS = """
SELECT t.id FROM tasks.tasks t
WHERE t.id IN (SELECT s.task_id FROM tasks.subtasks s WHERE s.id = ANY(CAST(:ids AS uuid[])))
ORDER BY t.id FOR UPDATE OF t
"""


async def apply(conn: AsyncConnection, changes: Iterable[Change]) -> Outcome:
    """Applies `changes` in the caller's transaction and updates the tasks they touch."""
    changes = list(changes)
    deltas: dict[str, TaskDelta] = {}
    if changes:
        await conn.execute(text(_LOCK_TASKS), {"ids": [c.subtask_id for c in changes]})
    for round_ in _rounds(changes):
        params: dict[str, list[Any]] = {name: [] for name, _ in _COLUMNS}
        for change in round_:
            for name, value in _params(change).items():
                params[name].append(value)
        for row in await conn.execute(text(_APPLY_SQL), params):
            _count(
                deltas,
                subtask_id=str(row[0]),
                task_id=str(row[1]),
                old_state=row[2],
                new_state=row[3],
                index=int(row[4]),
            )
    return await settle(conn, deltas)


def _rounds(changes: Iterable[Change]) -> list[list[Change]]:
    """Changes split so no round names a subtask twice (one UPDATE changes a row once)."""
    rounds: list[list[Change]] = []
    seen: list[set[str]] = []
    for change in changes:
        for ids, round_ in zip(seen, rounds, strict=True):
            if change.subtask_id not in ids:
                ids.add(change.subtask_id)
                round_.append(change)
                break
        else:
            seen.append({change.subtask_id})
            rounds.append([change])
    return rounds


def _count(
    deltas: dict[str, TaskDelta],
    *,
    subtask_id: str,
    task_id: str,
    old_state: str,
    new_state: str,
    index: int,
) -> None:
    delta = deltas.setdefault(task_id, TaskDelta())
    if not lifecycle.can_transition(old_state, new_state):
        return  # progress of a running subtask: nothing the task shows changed
    delta.subtasks.append(subtask_id)
    delta.started = True  # a worker reported on it, so the task has started
    if old_state == model.RUNNING:
        delta.running -= 1
    if new_state == model.RUNNING:
        delta.running += 1
    elif new_state == model.SUCCEEDED:
        delta.succeeded += 1
    elif new_state == model.FAILED:
        delta.failed += 1
    elif new_state == model.CANCELLED:
        delta.cancelled += 1
    if new_state in lifecycle.TERMINAL_STATES:
        delta.finished.append((subtask_id, index, new_state))


async def settle(conn: AsyncConnection, deltas: dict[str, TaskDelta]) -> Outcome:
    """Applies counter deltas, stamps versions, derives states, records webhooks."""
    outcome = Outcome()
    tasks: dict[str, model.Task] = {}
    for task_id, delta in sorted(deltas.items()):
        if not delta.subtasks:
            continue
        task = await store.bump_task(
            conn,
            task_id,
            succeeded=delta.succeeded,
            failed=delta.failed,
            cancelled=delta.cancelled,
            running=delta.running,
            started=delta.started,
        )
        await store.stamp_subtasks(conn, delta.subtasks, task.version)
        tasks[task_id] = task
        outcome.versions[task_id] = task.version
        outcome.ended += len(delta.finished)
    for task, finished_now in await store.refresh_state(conn, tasks):
        for subtask_id, index, state in deltas[task.id].finished:
            extra = webhooks.subtask_payload(subtask_id, index, state, None)
            outcome.webhooks += await webhooks.enqueue(conn, task, webhooks.SUBTASK_FINISHED, extra)
        if finished_now:
            outcome.webhooks += await webhooks.enqueue(conn, task, webhooks.TASK_FINISHED)
    return outcome


def new_delta() -> TaskDelta:
    """An empty per-task delta, for callers that change subtasks themselves."""
    return TaskDelta()
