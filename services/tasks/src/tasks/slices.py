"""Slice control: CancelTask, RetryTask, PauseTask and ResumeTask on the subtasks of one
slice (`filters.Slice`) instead of the whole task.

Each is one transaction over `store` that locks the task row first (as the whole-task
controls do), changes only the slice's subtasks and their outbox rows, moves the task's
counters with them and derives its state again; then it wakes the dispatcher and tells
watchers. The task itself is never cancelled or paused by a slice control.
"""

from __future__ import annotations

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from kiln.common import bus, errors, principal
from tasks import filters, model, service, store, webhooks

log = structlog.get_logger("tasks.slices")


class Slices:
    """The slice forms of the task controls."""

    def __init__(self, tasks: service.Tasks) -> None:
        self._tasks = tasks
        self._rt = tasks.rt

    async def _locked(
        self, conn: AsyncConnection, task_id: str, where: filters.Slice
    ) -> model.Task:
        caller = principal.current()
        task = service._visible(await store.get_task(conn, task_id, lock=True), task_id, caller)
        where.check(task)
        return task

    async def _after(self, task: model.Task, *, dispatch: bool) -> None:
        if dispatch:
            self._rt.wake_dispatcher()
        self._rt.wake_webhooks()
        await self._rt.hub.announce(task.id, task.version)

    async def cancel(self, task_id: str, where: filters.Slice) -> model.Task:
        """Cancels the slice's pending and queued subtasks; its running ones finish. The
        task ends (derived from its counts) only when every subtask has ended."""
        task_id = service._check_uuid(task_id, "task_id")
        async with self._rt.engine.begin() as conn:
            task = await self._locked(conn, task_id, where)
            if task.is_terminal:
                raise errors.FailedPrecondition(
                    f"the task already finished ({task.state}); there is nothing to cancel",
                    reason="TASK_FINISHED",
                )
            cancelled = await store.cancel_waiting(conn, task_id, where.values)
            if cancelled:
                bumped = await store.bump_task(conn, task_id, cancelled=len(cancelled))
                await store.stamp_subtasks(conn, cancelled, bumped.version)
                [(task, finished)] = await store.refresh_state(conn, [task_id])
                if finished:
                    await webhooks.enqueue(conn, task, webhooks.TASK_FINISHED)
        if cancelled:
            # Cancelled queued jobs leave the window: the dispatcher may send others.
            await self._after(task, dispatch=True)
        log.info("slice_cancelled", task_id=task_id, slice=where.describe(), count=len(cancelled))
        return await self._tasks.estimated(task)

    async def retry(self, task_id: str, where: filters.Slice) -> tuple[model.Task, int]:
        """Re-queues the slice's failed and cancelled subtasks as new attempts, also while
        the task runs; the task re-opens. A cancelled task must have ended first."""
        caller = principal.current()
        task_id = service._check_uuid(task_id, "task_id")
        async with self._rt.engine.connect() as conn:
            task = service._visible(await store.get_task(conn, task_id), task_id, caller)
        where.check(task)
        _check_retryable(task)
        if task.state == model.CANCELLED:
            # Lift the cancellation first so workers do not skip the new jobs.
            if not self._rt.nc.is_connected:
                raise errors.Unavailable("the message bus is unavailable; try again shortly")
            kv = await self._rt.js.key_value(bus.CANCELLATIONS_BUCKET)
            await kv.delete(task_id)
        async with self._rt.engine.begin() as conn:
            task = await self._locked(conn, task_id, where)
            _check_retryable(task)
            failed, cancelled, new_ids = await store.retry_subtasks(conn, task_id, where.values)
            if not new_ids:
                raise errors.FailedPrecondition(
                    f"the slice {where.describe()} has no failed or cancelled subtasks to retry",
                    reason="NOTHING_TO_RETRY",
                )
            await store.reopen_task(conn, task_id, failed, cancelled)
            task = await store.bump_task(conn, task_id)
            await store.stamp_subtasks(conn, new_ids, task.version)
            await store.enqueue_subtasks(conn, new_ids, task.priority)
        await self._after(task, dispatch=True)
        log.info("slice_retried", task_id=task_id, slice=where.describe(), count=len(new_ids))
        return await self._tasks.estimated(task), len(new_ids)

    async def set_paused(self, task_id: str, where: filters.Slice, paused: bool) -> model.Task:
        """Holds (or releases) the slice's subtasks: held ones are not dispatched while
        pending. The task's own `paused` is left as it is."""
        task_id = service._check_uuid(task_id, "task_id")
        async with self._rt.engine.begin() as conn:
            task = await self._locked(conn, task_id, where)
            if task.is_terminal:
                verb = "pause" if paused else "resume"
                raise errors.FailedPrecondition(
                    f"the task already finished ({task.state}); there is nothing to {verb}",
                    reason="TASK_FINISHED",
                )
            changed = await store.set_held(conn, task_id, where.values, paused)
            if changed:
                task = await store.bump_task(conn, task_id)
                await store.stamp_subtasks(conn, changed, task.version)
        if changed:
            await self._after(task, dispatch=not paused)
        event = "slice_paused" if paused else "slice_resumed"
        log.info(event, task_id=task_id, slice=where.describe(), count=len(changed))
        return await self._tasks.estimated(task)


def _check_retryable(task: model.Task) -> None:
    if task.state == model.CANCELLED and not task.all_subtasks_completed:
        raise errors.FailedPrecondition(
            "the task was cancelled and some of it still runs; retry after it ended",
            reason="TASK_STILL_RUNNING",
        )
