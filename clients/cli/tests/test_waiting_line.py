"""The CLI's line about why a task waits."""

from __future__ import annotations

from google.protobuf import duration_pb2

from kiln.cli import task_commands
from kiln.tasks.v1 import tasks_pb2


def test_waiting_line_names_the_reason() -> None:
    """Each wait reason reads as a sentence naming the queue; a task with nothing
    waiting gets no line."""
    task = tasks_pb2.Task(
        id="t1",
        settings=tasks_pb2.TaskSettings(queue=tasks_pb2.QUEUE_LUMINA),
        queue_position=3,
        eta=duration_pb2.Duration(seconds=12),
    )
    lines = {}
    for reason in tasks_pb2.WaitReason.values():
        task.wait_reason = reason  # type: ignore[assignment]
        lines[reason] = task_commands.waiting_line(task)
    assert lines[tasks_pb2.WAIT_REASON_UNSPECIFIED] == ""
    assert lines[tasks_pb2.WAIT_REASON_QUEUED] == (
        "waiting its turn: 3 jobs ahead in queue lumina, ETA 12s"
    )
    assert "kiln task resume t1" in lines[tasks_pb2.WAIT_REASON_TASK_PAUSED]
    assert "paused queue lumina" in lines[tasks_pb2.WAIT_REASON_QUEUE_PAUSED]
    assert lines[tasks_pb2.WAIT_REASON_NO_WORKER] == (
        "waiting: no live worker serves queue lumina; it starts when one does"
    )
