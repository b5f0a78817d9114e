"""T14: a WatchTask client that drops at 40 % progress and resumes from its last version."""

from __future__ import annotations

from typing import Any

import pytest
from faults import harness
from faults.harness import Fault

from kiln.tasks.v1 import tasks_pb2

JOBS = 20


@pytest.mark.long
@pytest.mark.timeout(120)
def test_resumed_watch_has_no_gap_and_no_regression(fault: Fault) -> None:
    """The first stream is cancelled by the client once progress reaches 40 %; a second
    stream with after_version = the last version seen carries on. Across both: versions
    strictly increase, progress never goes back, every subtask's final state is delivered
    (no gap), the last event is the complete SUCCEEDED task, and the stream ends OK."""
    fault.start(workers=1, worker_env={**harness.slow(0.05), "WORKER_CONCURRENCY": "2"})
    client = fault.client()
    task = client.create(JOBS)
    seen: list[Any] = []
    subtask_state: dict[str, int] = {}
    first = client.watch(task.id)
    for update in first:
        seen.append(update.task)
        if update.HasField("subtask"):
            subtask_state[update.subtask.id] = update.subtask.state
        if update.task.progress >= 0.4:
            first.cancel()  # type: ignore[attr-defined]  # the call object of a stream
            break
    dropped_at = seen[-1]
    assert dropped_at.state == tasks_pb2.TASK_STATE_RUNNING, "finished before the drop"
    resumed = list(client.watch(task.id, after_version=dropped_at.version))
    for update in resumed:
        seen.append(update.task)
        if update.HasField("subtask"):
            subtask_state[update.subtask.id] = update.subtask.state
    versions = [t.version for t in seen]
    # Task events carry the task version; several subtask events may share one version.
    assert versions == sorted(versions)
    # Strictly: every change of the task comes with a higher version. Messages sharing a
    # version (the subtask events of one change, the repeat after the resume) show the
    # same task counts and state, so the distinct task states have strictly rising versions.
    by_version: dict[int, set[tuple[Any, ...]]] = {}
    for t in seen:
        by_version.setdefault(t.version, set()).add(_counts(t))
    assert all(len(states) == 1 for states in by_version.values()), by_version
    # The resumed stream may repeat the subtask changes of the version it resumed from
    # (the first stream can drop between two messages of one version), never older ones.
    assert all(v >= dropped_at.version for v in (u.task.version for u in resumed))
    progress = [t.progress for t in seen]
    assert progress == sorted(progress)
    final = seen[-1]
    assert final.state == tasks_pb2.TASK_STATE_SUCCEEDED
    assert (final.succeeded_count, final.progress, final.all_subtasks_completed) == (
        JOBS, 1.0, True,
    )  # fmt: skip
    assert len(subtask_state) == JOBS
    assert set(subtask_state.values()) == {tasks_pb2.SUBTASK_STATE_SUCCEEDED}
    summary = fault.check()
    assert summary.states == {"succeeded": JOBS}
    harness.record(
        "T14", dropped_at_progress=round(dropped_at.progress, 2),
        events_before=len(seen) - len(resumed), events_after=len(resumed),
    )  # fmt: skip


def _counts(task: Any) -> tuple[Any, ...]:
    """What a task version fixes: state, counters and progress (not read-time estimates)."""
    return (
        task.state,
        task.succeeded_count,
        task.failed_count,
        task.cancelled_count,
        task.running_count,
        task.progress,
    )
