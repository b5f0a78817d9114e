"""Rows for the seam tests, written with the store's own insert functions on a migrated
database (no server, no bus), and a protobuf event builder for the fold."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import db
from kiln.imagegen.v1 import jobs_pb2
from tasks import app, model, store
from tasks import testing as h

K = jobs_pb2.SubtaskEventKind
UNREACHABLE_NATS = "nats://127.0.0.1:1"
"""Nothing here publishes: the config only needs a NATS URL."""


@contextlib.asynccontextmanager
async def migrated_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on `database_url` with the tasks schema migrated."""
    cfg = h.make_config(database_url, UNREACHABLE_NATS)
    app.migrate(cfg)
    engine = db.create_engine(cfg, "test-seams")
    try:
        yield engine
    finally:
        await engine.dispose()


async def task(
    conn: AsyncConnection,
    *,
    owner: str = "alice",
    values: Sequence[str] = ("red", "blue"),
    state: str = model.QUEUED,
    name: str = "cats",
    tags: Sequence[str] = (),
    request_id: str | None = None,
    webhook_url: str | None = None,
) -> tuple[model.Task, list[str]]:
    """A task of `owner` with one subtask per value (variable `color`, index order) in
    `state`; returns the task row and the subtask ids."""
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "owner_id": owner,
        "request_id": request_id,
        "task_name": name,
        "tags": list(tags),
        "prompt_template": "a {color} cat",
        "variables": {"color": list(values)},
        "zip_groups": [],
        "images_per_combination": 1,
        "ratio": "1:1",
        "seed": 7,
        "use_polish": False,
        "queue": "standard",
        "negative_prompt": "",
        "output_format": "png",
        "priority": 0,
        "webhook_url": webhook_url,
        "webhook_secret": "s3cret" if webhook_url else None,
        "webhook_events": ["task_finished", "subtask_finished"] if webhook_url else [],
        "state": model.PENDING,
        "total_images": len(values),
    }
    created = await store.insert_task(conn, row)
    ids = [uuid.uuid4() for _ in values]
    # Column order: store.SUBTASK_COLUMNS.
    await store.copy_subtasks(
        conn,
        (
            (sid, created.id, i, owner, json.dumps({"color": value}), f"a {value} cat", "",
             "1:1", 64, 64, 7 + i, False, "standard", "png", state, created.create_time)
            for i, (sid, value) in enumerate(zip(ids, values, strict=True))
        ),
    )  # fmt: skip
    return created, [str(i) for i in ids]


async def subtask_states(conn: AsyncConnection, task_id: str) -> list[str]:
    """The current subtasks' states in index order."""
    rows = await conn.execute(
        text(
            "SELECT state FROM tasks.subtasks WHERE task_id = CAST(:t AS uuid) "
            "AND NOT superseded ORDER BY idx"
        ),
        {"t": task_id},
    )
    return [str(r[0]) for r in rows]


async def set_states(conn: AsyncConnection, ids: Sequence[str], state: str) -> None:
    """Puts subtasks into `state` directly (the start of a scenario, not under test)."""
    await conn.execute(
        text("UPDATE tasks.subtasks SET state = :s WHERE id = ANY(CAST(:ids AS uuid[]))"),
        {"s": state, "ids": list(ids)},
    )


def event(
    subtask_id: str,
    task_id: str,
    kind: int,
    *,
    attempt: int = 1,
    delivery: int = 1,
    sequence: int = 1,
    at: dt.datetime | None = None,
    **fields: Any,
) -> jobs_pb2.SubtaskEvent:
    """A worker's event about one attempt of a subtask."""
    fields.setdefault("worker_id", "w1")
    message = jobs_pb2.SubtaskEvent(
        event_id=uuid.uuid4().hex,
        subtask_id=subtask_id,
        task_id=task_id,
        attempt=attempt,
        sequence=sequence,
        kind=kind,  # type: ignore[arg-type]
        delivery=delivery,
        **fields,
    )
    message.time.FromDatetime(at or dt.datetime.now(dt.UTC))
    return message


def result(subtask_id: str) -> jobs_pb2.JobResult:
    """The result a worker reports for a stored image of `subtask_id`."""
    outcome = jobs_pb2.JobResult(
        object_name=f"tasks/x/{subtask_id}.png",
        thumbnail_object_name=f"tasks/x/{subtask_id}.thumb.webp",
        content_type="image/png",
        size_bytes=123,
        sha256="ab" * 32,
        width=64,
        height=64,
        model="fake",
    )
    outcome.render_duration.FromMilliseconds(250)
    return outcome


async def webhook_events(conn: AsyncConnection, task_id: str) -> list[str]:
    """The events of the webhook deliveries recorded for a task."""
    rows = await conn.execute(
        text("SELECT event FROM tasks.webhook_deliveries WHERE task_id = CAST(:t AS uuid)"),
        {"t": task_id},
    )
    return [str(r[0]) for r in rows]
