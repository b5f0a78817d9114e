"""Reads' shared work, kept per task version: the Task built from a row and its message.

Every change of a task's stored fields bumps its version in the same transaction (the
fold, cancel, retry, pause, update and soft delete all call `store.bump_task` or bump in
their own statement), so a task's stored fields are a function of (id, version). A read
still fetches the row every time -- ownership, deletion and the version are always the
database's latest -- and only the Python work of turning a row into a Task and a Task into
its message is reused when the version is one seen before. The figures computed per call
(queue position, ETA, wait reason) are never cached: they are set on a copy.
"""

from __future__ import annotations

import collections
from typing import Any

from kiln.tasks.v1 import tasks_pb2
from tasks import convert, model

DEFAULT_BUDGET_BYTES = 32 * 1024 * 1024
"""Roughly how many bytes of encoded Task messages are kept (a task's variables can make
its message large, so the bound is on bytes rather than entries)."""


class _Entry:
    __slots__ = ("message", "size", "task")

    def __init__(self, task: model.Task) -> None:
        self.task = task
        self.message: tasks_pb2.Task | None = None
        self.size = 0


class TaskReads:
    """A bounded, least-recently-used map from (task id, version) to the Task of that row
    and its stored fields' message. Single event loop: no locking needed."""

    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self._budget = budget_bytes
        self._used = 0
        self._entries: collections.OrderedDict[tuple[str, int], _Entry] = collections.OrderedDict()

    def task(self, row: Any) -> model.Task:
        """The Task of a `tasks.tasks` row (a mapping), built once per (id, version)."""
        key = (str(row["id"]), row["version"])
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(model.Task.from_row(row))
            self._entries[key] = entry
            self._used += 512  # the Task itself, until its message is measured
            self._trim()
        else:
            self._entries.move_to_end(key)
        return entry.task

    def message(self, task: model.Task) -> tasks_pb2.Task:
        """The Task message of `task` (do not modify it: it may be shared). Its stored
        fields are converted once per version; the per-call estimates are set on a copy."""
        entry = self._entries.get((task.id, task.version))
        if entry is None:  # not read through this cache: nothing to share
            return convert.task_proto(task)
        if entry.message is None:
            entry.message = convert.task_proto(entry.task)
            size = entry.message.ByteSize()
            self._used += size
            entry.size = size
            self._trim()
        if not _has_estimates(task):
            return entry.message
        message = tasks_pb2.Task()
        message.CopyFrom(entry.message)
        convert.set_estimates(message, task)
        return message

    def __len__(self) -> int:
        return len(self._entries)

    def _trim(self) -> None:
        while self._used > self._budget and len(self._entries) > 1:
            _, entry = self._entries.popitem(last=False)
            self._used -= 512 + entry.size


def _has_estimates(task: model.Task) -> bool:
    return bool(task.queue_position or task.wait_reason or task.eta_seconds is not None)
