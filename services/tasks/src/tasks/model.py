"""Domain objects of the tasks service: tasks and subtasks as stored, and their states."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

from tasks import lifecycle

# A task's states reuse the subtask state names.
PENDING, QUEUED, RUNNING = lifecycle.PENDING, lifecycle.QUEUED, lifecycle.RUNNING
SUCCEEDED, FAILED, CANCELLED = lifecycle.SUCCEEDED, lifecycle.FAILED, lifecycle.CANCELLED

# tasks.lifecycle owns the subtask states and their moves; these are the task's own.
PARTIALLY_FAILED = "partially_failed"
TASK_STATES = (PENDING, RUNNING, SUCCEEDED, PARTIALLY_FAILED, FAILED, CANCELLED)
TERMINAL_TASK_STATES = frozenset({SUCCEEDED, PARTIALLY_FAILED, FAILED, CANCELLED})

# Why an unfinished task's waiting subtasks do not run yet ("" when nothing waits).
WAIT_QUEUED, WAIT_TASK_PAUSED, WAIT_QUEUE_PAUSED, WAIT_NO_WORKER = (
    "queued",
    "task_paused",
    "queue_paused",
    "no_worker",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Task:
    """A task row, plus the estimates computed when it is read."""

    id: str
    owner_id: str
    request_id: str | None
    task_name: str
    tags: list[str]
    prompt_template: str
    variables: dict[str, list[str]]
    zip_groups: list[list[str]]
    images_per_combination: int
    ratio: str
    seed: int | None
    use_polish: bool
    queue: str
    negative_prompt: str
    output_format: str
    priority: int
    webhook_url: str | None
    webhook_events: list[str]
    state: str
    total_images: int
    succeeded_count: int
    failed_count: int
    cancelled_count: int
    running_count: int
    is_deleted: bool
    create_time: dt.datetime | None
    start_time: dt.datetime | None
    finish_time: dt.datetime | None
    update_time: dt.datetime | None
    version: int
    paused: bool = False
    reuse_results: bool = False
    share_results: bool = False
    queue_position: int = 0
    eta_seconds: float | None = None
    wait_reason: str = ""

    @property
    def ended(self) -> int:
        """Subtasks in a terminal state."""
        return self.succeeded_count + self.failed_count + self.cancelled_count

    @property
    def all_subtasks_completed(self) -> bool:
        """Whether every subtask reached a terminal state."""
        return self.ended >= self.total_images

    @property
    def is_terminal(self) -> bool:
        """Whether the task reached a terminal state."""
        return self.state in TERMINAL_TASK_STATES

    @property
    def finished(self) -> bool:
        """Terminal, and nothing of it still runs: a watch ends here."""
        return self.is_terminal and self.all_subtasks_completed

    @classmethod
    def from_row(cls, row: Any, **extra: Any) -> Task:
        """A task from a `tasks.tasks` row (extra columns are ignored)."""
        return cls(**_fields(cls, row), **extra)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Subtask:
    """A subtask row."""

    id: str
    task_id: str
    idx: int
    owner_id: str
    variable_values: dict[str, str]
    prompt: str
    negative_prompt: str
    polished_prompt: str
    ratio: str
    width: int
    height: int
    seed: int
    use_polish: bool
    queue: str
    output_format: str
    state: str
    attempt: int
    generation: int
    superseded: bool
    retried_from: str | None
    error_type: str | None
    error_message: str | None
    object_name: str | None
    thumbnail_object_name: str | None
    content_type: str | None
    result_width: int | None
    result_height: int | None
    size_bytes: int | None
    sha256: str | None
    model: str | None
    render_ms: int | None
    worker_id: str
    step: int
    total_steps: int
    changed_version: int
    create_time: dt.datetime | None
    queue_time: dt.datetime | None
    start_time: dt.datetime | None
    finish_time: dt.datetime | None
    reused_from: str | None = None
    held: bool = False

    @classmethod
    def from_row(cls, row: Any) -> Subtask:
        """A subtask from a `tasks.subtasks` row (extra columns are ignored)."""
        return cls(**_fields(cls, row))


_FIELD_NAMES: dict[type[Any], frozenset[str]] = {}
"""Each model's field names, worked out once (a page of rows asked for them per row)."""


def _fields(cls: type[Any], row: Any) -> dict[str, Any]:
    """The row's values for the dataclass fields of `cls`; UUIDs as strings."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in row.items() if k in names}
