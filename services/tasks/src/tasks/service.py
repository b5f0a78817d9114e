"""The task use cases behind TaskService: create, read, cancel, retry, delete.

Each use case is one transaction over `store`; after commit it wakes the dispatcher and
webhook sender and announces the change to watchers. Ownership is checked here: another
owner's task is reported exactly like a missing one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import sqlalchemy.exc
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from kiln.common import bus, errors, ids, paging, principal
from tasks import (
    estimates,
    expansion,
    filters,
    model,
    readcache,
    spec,
    store,
    validation,
    watch,
    webhooks,
)
from tasks.watch import Listener, Round

log = structlog.get_logger("tasks.service")

_SUBTASKS_DEFAULT_PAGE = 100
_TASKS_DEFAULT_PAGE = 50


@dataclasses.dataclass
class Runtime:
    """What the use cases share: connections, notifiers and limits."""

    engine: AsyncEngine
    nc: Client
    js: JetStreamContext
    hub: watch.Hub
    estimator: estimates.Estimator
    limits: spec.Limits
    max_active_tasks: int
    priority_aging: float = 0.0
    wake_dispatcher: Callable[[], None] = lambda: None
    wake_webhooks: Callable[[], None] = lambda: None

    def task_limits(self) -> spec.Limits:
        """`limits` with the largest job the bus takes now (the server's max payload, which
        the connection keeps from its last INFO, so this works while NATS is down too)."""
        return dataclasses.replace(
            self.limits, max_job_bytes=self.nc.max_payload - validation.JOB_HEADER_ALLOWANCE
        )


@contextlib.asynccontextmanager
async def _reading(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for reads only, in autocommit: each statement sees the latest commits
    as under READ COMMITTED, without the BEGIN and ROLLBACK round trips a transaction adds
    (two of the three round trips of a GetTask)."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def _visible(task: model.Task | None, task_id: str, caller: principal.Principal) -> model.Task:
    if task is None or (task.owner_id != caller.user_id and not caller.is_admin):
        raise errors.NotFound("task", task_id)
    return task


def _check_uuid(value: str, field: str) -> str:
    """The id in request field `field`, normalised; INVALID_ARGUMENT naming the field when
    it is malformed (a well-formed id that names nothing is NOT_FOUND after the lookup)."""
    return str(ids.parse_id(field, value))


def _subtask_rows(
    task_id: str,
    owner_id: str,
    plans: list[expansion.SubtaskPlan],
    task_spec: spec.TaskSpec,
    now: dt.datetime,
) -> Iterator[tuple[Any, ...]]:
    # Column order: store.SUBTASK_COLUMNS.
    queue, fmt, polish = task_spec.queue, task_spec.output_format, task_spec.use_polish
    dumps = _json_dumps
    for plan in plans:
        yield (
            uuid.uuid4(),
            task_id,
            plan.index,
            owner_id,
            dumps(plan.variable_values),
            plan.prompt,
            plan.negative_prompt,
            plan.ratio,
            plan.width,
            plan.height,
            plan.seed,
            polish,
            queue,
            fmt,
            model.PENDING,
            now,
        )


def _json_dumps(value: dict[str, str]) -> str:
    return json.dumps(value, ensure_ascii=False)


class Tasks:
    """TaskService's use cases."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.reads = readcache.TaskReads()
        """GetTask's and ListTasks' conversions, reused per task version."""

    async def create(
        self, task_spec: spec.TaskSpec, *, validate_only: bool
    ) -> tuple[model.Task, float]:
        """Validates, expands and stores a task with its subtasks and outbox rows in one
        transaction; returns it with its ETA in seconds. Idempotent on request_id."""
        caller = principal.current()
        total = validation.validate(task_spec, self.rt.task_limits())
        if validate_only:
            eta = await self.rt.estimator.seconds(task_spec.queue, total)
            return _preview(task_spec, caller.user_id, total), eta
        if task_spec.request_id:
            async with self.rt.engine.connect() as conn:
                existing = await store.find_by_request_id(
                    conn, caller.user_id, task_spec.request_id
                )
            if existing is not None:
                return await self._with_estimates(existing)
        plans = expansion.expand(task_spec, random.SystemRandom())
        task_id = str(uuid.uuid4())
        try:
            async with self.rt.engine.begin() as conn:
                active = await store.count_active(conn, caller.user_id)
                if active >= self.rt.max_active_tasks:
                    raise errors.ResourceExhausted(
                        f"you have {active} unfinished tasks, the limit is "
                        f"{self.rt.max_active_tasks}; wait for some to finish",
                        reason="TOO_MANY_ACTIVE_TASKS",
                        retry_after=30.0,
                    )
                task = await store.insert_task(
                    conn, _task_row(task_id, caller.user_id, task_spec, total)
                )
                assert task.create_time is not None
                await store.copy_subtasks(
                    conn, _subtask_rows(task_id, caller.user_id, plans, task_spec, task.create_time)
                )
                await store.enqueue_pending(conn, task_id, task_spec.priority)
        except sqlalchemy.exc.IntegrityError:
            # A concurrent copy of this request won the unique (owner, request_id) index.
            async with self.rt.engine.connect() as conn:
                existing = await store.find_by_request_id(
                    conn, caller.user_id, task_spec.request_id
                )
            if existing is None:
                raise
            return await self._with_estimates(existing)
        log.info("task_created", task_id=task_id, subtasks=total, queue=task_spec.queue)
        self.rt.wake_dispatcher()
        return await self._with_estimates(task)

    async def _with_estimates(self, task: model.Task) -> tuple[model.Task, float]:
        task = await self.estimated(task)
        return task, task.eta_seconds or 0.0

    async def estimated(self, task: model.Task) -> model.Task:
        """The task with why it waits, its queue position (while pending) and its ETA (the
        queue wait included; none while it cannot run: paused, or no live worker)."""
        if task.is_terminal:
            return task
        estimator = self.rt.estimator
        slots, _ = await estimator.capacity(task.queue)
        reason = ""
        if task.total_images - task.ended - task.running_count > 0:
            if task.paused:
                reason = model.WAIT_TASK_PAUSED
            elif await estimator.queue_paused(task.queue):
                reason = model.WAIT_QUEUE_PAUSED
            elif slots <= 0:
                reason = model.WAIT_NO_WORKER
            else:
                reason = model.WAIT_QUEUED
        position = 0
        if task.state == model.PENDING and not task.paused:
            async with _reading(self.rt.engine) as conn:
                position = await store.queue_position(conn, task, self.rt.priority_aging)
        eta: float | None = None
        if reason in ("", model.WAIT_QUEUED):
            eta = await estimator.seconds(task.queue, position + task.total_images - task.ended)
        return dataclasses.replace(
            task, queue_position=position, eta_seconds=eta, wait_reason=reason
        )

    async def get(self, task_id: str) -> model.Task:
        """One visible task, with queue position and ETA while it waits."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        async with _reading(self.rt.engine) as conn:
            task = _visible(await store.get_task(conn, task_id, reads=self.reads), task_id, caller)
        return await self.estimated(task)

    async def list_tasks(
        self,
        *,
        page_size: int,
        page_token: str,
        states: list[str],
        tag: str,
        search: str,
        owner_id: str,
    ) -> tuple[list[model.Task], str]:
        """A page of visible tasks, newest first, and the next page's token."""
        caller = principal.current()
        bad_text = [
            errors.FieldViolation(field, validation.NUL_PROBLEM)
            for field, text in (("tag", tag), ("search", search), ("owner_id", owner_id))
            if "\x00" in text
        ]
        if bad_text:
            raise errors.InvalidArgument(bad_text)
        if owner_id and owner_id != caller.user_id and not caller.is_admin:
            raise errors.PermissionDenied(
                "only admins may list other owners' tasks", reason="ADMIN_ROLE_REQUIRED"
            )
        owner: str | None = owner_id or (None if caller.is_admin else caller.user_id)
        size = paging.page_size(page_size, _TASKS_DEFAULT_PAGE)
        filters = paging.fingerprint(caller.user_id, owner, sorted(states), tag, search)
        cursor = paging.Cursor.after(page_token, filters)
        after = None if cursor is None else (cursor.create_time, str(cursor.id))
        async with _reading(self.rt.engine) as conn:
            found = await store.list_tasks(
                conn,
                owner_id=owner,
                states=states,
                tag=tag,
                search=search,
                after=after,
                limit=size + 1,
                reads=self.reads,
            )
        return paging.cut(found, size, filters, _task_position)

    async def list_subtasks(
        self,
        task_id: str,
        *,
        page_size: int,
        page_token: str,
        states: list[str],
        variables: filters.Slice,
    ) -> tuple[list[model.Subtask], str]:
        """A page of a visible task's current subtasks in index order."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        size = paging.page_size(page_size, _SUBTASKS_DEFAULT_PAGE)
        fingerprint = paging.fingerprint(task_id, sorted(states), sorted(variables.values.items()))
        position = paging.decode(page_token, fingerprint)
        after = -1 if position is None else paging.int_at(position, "i")
        async with self.rt.engine.connect() as conn:
            # A read: a name or value the task does not have selects nothing (as it always
            # did); the controls refuse it instead (`filters.Slice.check`).
            _visible(await store.get_task(conn, task_id), task_id, caller)
            found = await store.list_subtasks(
                conn,
                task_id,
                states=states,
                variables=variables.values,
                after_index=after,
                limit=size + 1,
            )
        return paging.cut(found, size, fingerprint, lambda s: {"i": s.idx}, fit=_fitting)

    async def cancel(self, task_id: str) -> model.Task:
        """Drops the task's waiting work, marks it cancelled and asks workers to stop."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        async with self.rt.engine.begin() as conn:
            task = _visible(await store.get_task(conn, task_id, lock=True), task_id, caller)
            if task.state == model.CANCELLED:
                return await self.estimated(task)
            if task.is_terminal:
                raise errors.FailedPrecondition(
                    f"the task already finished ({task.state}); there is nothing to cancel",
                    reason="TASK_FINISHED",
                )
            task = await self._cancel_locked(conn, task)
        await self._announce(task)
        await self.record_cancellation(task_id)
        log.info("task_cancelled", task_id=task_id)
        return task

    async def _cancel_locked(self, conn: AsyncConnection, task: model.Task) -> model.Task:
        cancelled = await store.cancel_waiting(conn, task.id)
        await store.mark_cancelled(conn, task.id)
        bumped = await store.bump_task(conn, task.id, cancelled=len(cancelled))
        await store.stamp_subtasks(conn, cancelled, bumped.version)
        [(task, finished)] = await store.refresh_state(conn, [task.id])
        if finished:
            await webhooks.enqueue(conn, task, webhooks.TASK_FINISHED)
        return task

    async def record_cancellation(self, task_id: str) -> bool:
        """Writes the cancellation record workers check before and while running a job of
        the task; False (logged) when NATS cannot take it now: the database already says
        cancelled, so late events change nothing, and the maintenance loop writes it again."""
        if not self.rt.nc.is_connected:
            log.warning("cancellation_record_failed", task_id=task_id, reason="nats_down")
            return False
        try:
            kv = await self.rt.js.key_value(bus.CANCELLATIONS_BUCKET)
            await asyncio.wait_for(kv.put(task_id, b"cancelled"), timeout=2.0)
        except Exception as exc:
            log.warning("cancellation_record_failed", task_id=task_id, error=type(exc).__name__)
            return False
        return True

    async def _announce(self, task: model.Task) -> None:
        self.rt.wake_webhooks()
        await self.rt.hub.announce(task.id, task.version)

    async def retry(self, task_id: str) -> tuple[model.Task, int]:
        """Re-queues the failed and cancelled subtasks of a finished task as new subtask rows
        (retried_from = the old row, which is superseded and leaves the counts)."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        async with self.rt.engine.connect() as conn:
            task = _visible(await store.get_task(conn, task_id), task_id, caller)
        _check_retryable(task)
        if task.state == model.CANCELLED:
            # Lift the cancellation first so workers do not skip the new jobs.
            if not self.rt.nc.is_connected:
                raise errors.Unavailable(
                    "the message bus is unavailable; try again shortly",
                    reason=errors.BUS_UNAVAILABLE,
                )
            kv = await self.rt.js.key_value(bus.CANCELLATIONS_BUCKET)
            await kv.delete(task_id)
        async with self.rt.engine.begin() as conn:
            task = _visible(await store.get_task(conn, task_id, lock=True), task_id, caller)
            _check_retryable(task)
            failed, cancelled, new_ids = await store.retry_subtasks(conn, task_id)
            await store.reopen_task(conn, task_id, failed, cancelled)
            task = await store.bump_task(conn, task_id)
            await store.stamp_subtasks(conn, new_ids, task.version)
            await store.enqueue_pending(conn, task_id, task.priority)
        self.rt.wake_dispatcher()
        await self._announce(task)
        log.info("task_retried", task_id=task_id, subtasks=len(new_ids))
        return await self.estimated(task), len(new_ids)

    async def set_paused(self, task_id: str, paused: bool) -> model.Task:
        """Pauses (holds the undispatched subtasks; queued and running ones finish) or
        resumes an unfinished task; resuming also releases every paused slice. Pausing a
        paused task, or resuming one with nothing paused, changes nothing."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        async with self.rt.engine.begin() as conn:
            task = _visible(await store.get_task(conn, task_id, lock=True), task_id, caller)
            if task.is_terminal:
                verb = "pause" if paused else "resume"
                raise errors.FailedPrecondition(
                    f"the task already finished ({task.state}); there is nothing to {verb}",
                    reason="TASK_FINISHED",
                )
            changed = task.paused != paused
            released = [] if paused else await store.set_held(conn, task_id, None, False)
            if changed:
                await store.set_paused(conn, task_id, paused)
            if changed or released:
                task = await store.bump_task(conn, task_id)
                await store.stamp_subtasks(conn, released, task.version)
                changed = True
        if changed:
            if not paused:
                self.rt.wake_dispatcher()
            await self._announce(task)
            log.info("task_paused" if paused else "task_resumed", task_id=task_id)
        return await self.estimated(task)

    async def update(self, task_id: str, paths: list[str], priority: int) -> model.Task:
        """Changes the fields named in `paths` (only "priority") of an unfinished task;
        waiting subtasks take the new priority from the next dispatch round."""
        caller = principal.current()
        if not task_id:
            raise errors.InvalidArgument.field("task.id", "must name the task to update")
        if not paths:
            raise errors.InvalidArgument.field(
                "update_mask", 'must name the fields to change; only "priority" can change'
            )
        unknown = sorted(set(paths) - {"priority"})
        if unknown:
            raise errors.InvalidArgument.field(
                "update_mask", f'{unknown} cannot be changed; only "priority" can'
            )
        highest = self.rt.limits.max_priority
        if not 0 <= priority <= highest:
            raise errors.InvalidArgument.field(
                "task.priority", f"must be between 0 and {highest}, got {priority}"
            )
        task_id = _check_uuid(task_id, "task.id")
        async with self.rt.engine.begin() as conn:
            task = _visible(await store.get_task(conn, task_id, lock=True), task_id, caller)
            if task.is_terminal:
                raise errors.FailedPrecondition(
                    f"the task already finished ({task.state}); its priority no longer matters",
                    reason="TASK_FINISHED",
                )
            changed = task.priority != priority
            if changed:
                await store.set_priority(conn, task_id, priority)
                task = await store.bump_task(conn, task_id)
        if changed:
            self.rt.wake_dispatcher()
            await self._announce(task)
            log.info("task_priority_changed", task_id=task_id, priority=priority)
        return await self.estimated(task)

    async def delete(self, task_id: str) -> None:
        """Soft-deletes a task, cancelling it first when it has not finished."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        cancelled = False
        async with self.rt.engine.begin() as conn:
            task = _visible(await store.get_task(conn, task_id, lock=True), task_id, caller)
            if not task.is_terminal:
                task = await self._cancel_locked(conn, task)
                cancelled = True
            await store.soft_delete(conn, task_id)
            task = await store.get_task(conn, task_id) or task
        if cancelled:
            await self.record_cancellation(task_id)
        await self._announce(task)
        log.info("task_deleted", task_id=task_id, cancelled=cancelled)

    async def visible_subtask(self, subtask_id: str) -> model.Subtask:
        """A subtask of a task the caller may see; NOT_FOUND otherwise."""
        caller = principal.current()
        subtask_id = _check_uuid(subtask_id, "subtask_id")
        async with self.rt.engine.connect() as conn:
            subtask = await store.get_subtask(conn, subtask_id)
        if subtask is None or (subtask.owner_id != caller.user_id and not caller.is_admin):
            raise errors.NotFound("subtask", subtask_id)
        return subtask


_PAGE_TEXT_BYTES = 2 * 1024 * 1024
"""A page of subtasks stops growing past this many bytes of text (a rendered prompt may be
16,000 characters, twice per subtask), so a client's default 4 MiB receive limit takes
any page; the next page token resumes after the last subtask sent."""


def _task_position(task: model.Task) -> dict[str, Any]:
    """Where the next page of tasks starts: after this task's (create_time, id)."""
    assert task.create_time is not None  # a stored task always has one
    return paging.Cursor(task.create_time, uuid.UUID(task.id)).position()


def _fitting(subtasks: list[model.Subtask]) -> list[model.Subtask]:
    """The longest prefix of `subtasks` (at least one) within _PAGE_TEXT_BYTES of text."""
    total = 0
    for count, subtask in enumerate(subtasks):
        texts = [subtask.prompt, subtask.negative_prompt, subtask.polished_prompt or ""]
        texts += [subtask.error_message or "", *subtask.variable_values.values()]
        total += sum(len(t) if t.isascii() else len(t.encode()) for t in texts)
        if total > _PAGE_TEXT_BYTES and count > 0:
            return subtasks[:count]
    return subtasks


def _check_retryable(task: model.Task) -> None:
    if not task.is_terminal or not task.all_subtasks_completed:
        raise errors.FailedPrecondition(
            "the task is still running; retry it after it finishes (or cancel it first)",
            reason="TASK_STILL_RUNNING",
        )
    if task.failed_count + task.cancelled_count == 0:
        raise errors.FailedPrecondition(
            "the task has no failed or cancelled subtasks to retry", reason="NOTHING_TO_RETRY"
        )


def _task_row(task_id: str, owner_id: str, s: spec.TaskSpec, total: int) -> dict[str, Any]:
    webhook = s.webhook
    return {
        "id": task_id,
        "owner_id": owner_id,
        "request_id": s.request_id or None,
        "task_name": s.task_name,
        "tags": list(s.tags),
        "prompt_template": s.prompt_template,
        "variables": {k: list(v) for k, v in s.variables.items()},
        "zip_groups": [list(g) for g in s.zip_groups],
        "images_per_combination": s.images,
        "ratio": s.effective_ratio,
        "seed": s.seed,
        "use_polish": s.use_polish,
        "queue": s.queue,
        "negative_prompt": s.negative_prompt,
        "output_format": s.output_format,
        "priority": s.priority,
        "webhook_url": webhook.url if webhook else None,
        "webhook_secret": webhook.secret if webhook else None,
        "webhook_events": list(webhook.selected_events) if webhook else [],
        "reuse_results": s.reuse_results,
        "share_results": s.share_results,
        "state": model.PENDING,
        "total_images": total,
    }


def _preview(s: spec.TaskSpec, owner_id: str, total: int) -> model.Task:
    row = _task_row("", owner_id, s, total)
    row.pop("webhook_secret")
    row.pop("request_id")
    return model.Task(
        request_id=None,
        succeeded_count=0,
        failed_count=0,
        cancelled_count=0,
        running_count=0,
        is_deleted=False,
        create_time=None,
        start_time=None,
        finish_time=None,
        update_time=None,
        version=0,
        **row,
    )


@dataclasses.dataclass(eq=False)
class WatchUpdate:
    """One update of a watch: the task, and either one changed subtask (`subtask`) or, for
    batched watches, every subtask that changed (`batch`, possibly empty); `snapshot` when it
    is the opening snapshot. Updates after the snapshot are shared by every watcher that is
    caught up, so `wire` lets the transport encode one once for all of them."""

    task: model.Task
    subtask: model.Subtask | None = None
    snapshot: bool = False
    batch: list[model.Subtask] | None = None
    wire: Any = None


@dataclasses.dataclass
class _Changes:
    """A round's content: the task after it, the subtasks that changed in it (in change
    order), one update per changed subtask, and the task-only update for watchers without
    subtasks; the batched update of the round is made when a batched watcher first asks."""

    task: model.Task
    subtasks: list[model.Subtask]
    subtask_updates: list[WatchUpdate]
    task_update: WatchUpdate
    snapshot: bool = False
    has_subtasks: bool = True
    """Whether `subtasks` was read (False: the round was read for task-only watchers)."""
    _batch_update: WatchUpdate | None = None

    def updates(self, cursor: int, include_subtasks: bool) -> list[WatchUpdate]:
        """What a watcher that has seen everything up to version `cursor` is sent."""
        if include_subtasks:
            news = [u for u in self.subtask_updates if _changed_after(u, cursor)]
            if news:
                return news
        return [self.task_update] if self.task.version > cursor else []

    def batch_update(self) -> WatchUpdate:
        """The round as one batched update (shared by every caught-up batched watcher)."""
        if self._batch_update is None:
            self._batch_update = WatchUpdate(self.task, snapshot=self.snapshot, batch=self.subtasks)
        return self._batch_update


def _changed_after(update: WatchUpdate, cursor: int) -> bool:
    return update.subtask is not None and update.subtask.changed_version > cursor


def _batched(rounds: list[Round], cursor: int) -> WatchUpdate | None:
    """The rounds after `cursor` as one batched update: each subtask that changed after
    `cursor`, in its latest state, and the task of the last round. A caught-up watcher with
    one round gets the round's shared update; None when nothing is newer than `cursor`."""
    last: _Changes = rounds[-1].content
    if len(rounds) == 1 and rounds[0].after >= cursor:
        return last.batch_update()
    latest: dict[str, model.Subtask] = {}
    for round_ in rounds:
        for subtask in round_.content.subtasks:
            if subtask.changed_version > cursor:
                latest.pop(subtask.id, None)  # keep the order of the latest changes
                latest[subtask.id] = subtask
    if not latest and last.task.version <= cursor:
        return None
    return WatchUpdate(last.task, batch=list(latest.values()))


class Watches:
    """WatchTask: snapshot, then every change in version order, until the task finishes."""

    def __init__(self, tasks: Tasks, refresh: float) -> None:
        self._tasks = tasks
        self._refresh = refresh
        self._openings: dict[tuple[str, int, bool], asyncio.Future[Round]] = {}
        """Opening reads that have not got their database connection yet, by task, version
        and subtasks: watchers opening the same task meanwhile share one read."""

    async def _opening(self, task_id: str, since: int, subtasks: bool) -> Round:
        """The opening read of a watch (snapshot). Watchers of one task that open while a
        read waits for its database connection join that read rather than each taking a
        connection: a thousand watchers opening at once need one read per task, not a
        thousand. Each joined after it started listening, and the read's queries run
        after that, so no joiner misses a change."""
        key = (task_id, since, subtasks)
        shared = self._openings.get(key)
        if shared is None:
            shared = self._openings[key] = asyncio.get_running_loop().create_future()

            def connected() -> None:
                if self._openings.get(key) is shared:
                    del self._openings[key]  # from now on, a new watcher reads anew

            async def read() -> None:
                try:
                    result = await self._read(
                        task_id, since, snapshot=True, subtasks=subtasks, connected=connected
                    )
                except Exception as exc:
                    shared.set_exception(exc)
                except BaseException:
                    shared.cancel()
                    raise
                else:
                    shared.set_result(result)
                finally:
                    connected()

            reading = asyncio.ensure_future(read())
            reading.add_done_callback(_retrieve_quietly)
            shared.add_done_callback(_retrieve_quietly)
        # Shielded: one watcher going away must not cancel the read the others wait for.
        return await asyncio.shield(shared)

    async def watch(
        self, task_id: str, after_version: int, include_subtasks: bool, batch: bool = False
    ) -> AsyncIterator[WatchUpdate]:
        """The updates of one watch; ends after the task finished and its last change.
        With `batch` (which needs `include_subtasks`), each round of changes the watcher
        gets is one update with every subtask that changed in it."""
        caller = principal.current()
        task_id = _check_uuid(task_id, "task_id")
        if after_version < 0:
            raise errors.InvalidArgument.field("after_version", "must not be negative")
        if batch and not include_subtasks:
            raise errors.InvalidArgument.field(
                "batch_subtasks", "batches subtask changes, so it needs include_subtasks"
            )
        # Listen before the first read, so no change between the read and the wait is missed.
        hub = self._tasks.rt.hub
        async with hub.listen(task_id, caller.user_id, subtasks=include_subtasks) as listener:
            # The opening read is this watcher's own: it checks ownership, and a resumed
            # watch sends the changes of the version it resumes from again (several subtask
            # messages share one task version, and a stream can drop between two of them;
            # clients apply subtask states idempotently).
            since = max(after_version - 1, 0)
            opening = await self._opening(task_id, since, include_subtasks)
            task = _visible(opening.content.task if not opening.gone else None, task_id, caller)
            if after_version > task.version:
                # Nothing newer would ever be sent; refuse rather than end silently.
                raise errors.InvalidArgument.field(
                    "after_version",
                    f"is {after_version}, but the task is only at version {task.version}; "
                    "resume from a version you received",
                )
            snapshot: _Changes = opening.content
            if include_subtasks and snapshot.subtask_updates:
                if batch:
                    yield snapshot.batch_update()
                else:
                    for update in snapshot.subtask_updates:
                        yield update
            elif task.version > after_version or after_version == 0:
                yield snapshot.task_update
            listener.start(task.version)
            async for update in self._follow(task, listener, include_subtasks, batch):
                yield update

    async def _follow(
        self, task: model.Task, listener: Listener, include_subtasks: bool, batch: bool
    ) -> AsyncIterator[WatchUpdate]:
        """The updates after the opening snapshot, round by round, until the task finished."""
        own_read = functools.partial(self._read, task.id, subtasks=include_subtasks)

        async def shared_read(since: int) -> Round:
            # Decided when the read starts: a watcher that joins later and wants subtasks
            # finds the round marked without them and reads its own (below).
            return await self._read(task.id, since, subtasks=listener.shared_wants_subtasks)

        while not task.finished:
            rounds = listener.rounds()
            if rounds is None or (
                include_subtasks and any(not r.content.has_subtasks for r in rounds if not r.gone)
            ):
                # Fell out of the shared log, or the log's rounds were read without the
                # subtasks this watcher wants: catch up on our own.
                rounds = [await own_read(listener.cursor)]
            elif not rounds:
                if listener.gone:
                    return
                await listener.wait_and_catch_up(self._refresh, shared_read)
                continue
            gone = next((i for i, r in enumerate(rounds) if r.gone), None)
            if gone is not None:
                rounds = rounds[:gone]  # the task was deleted after these
            if batch and rounds:
                update = _batched(rounds, listener.cursor)
                if update is not None:
                    yield update
            else:
                for round_ in rounds:
                    for update in round_.content.updates(listener.cursor, include_subtasks):
                        yield update
            if rounds:
                task = rounds[-1].content.task
                listener.cursor = max(listener.cursor, rounds[-1].version)
            if gone is not None:
                return

    async def _read(
        self,
        task_id: str,
        since: int,
        *,
        snapshot: bool = False,
        subtasks: bool = True,
        connected: Callable[[], None] = lambda: None,
    ) -> Round:
        """The task and (unless `subtasks` is false) its subtasks changed after version
        `since`, as a round. Shared rounds hold the subtasks while some watcher of the task
        wants them (a round after a change names only the few that changed); a round read
        without them says so (`has_subtasks`). `connected` is called once the read has its
        connection, before its queries."""
        async with _reading(self._tasks.rt.engine) as conn:
            connected()
            task = await store.get_task(conn, task_id)
            if task is None:
                return Round(since, since, gone=True)
            changed: list[model.Subtask] = []
            if subtasks and task.version > since:
                changed = await store.changed_subtasks(conn, task_id, since, task.version)
        # The connection is released before the (possibly slow) clients are written to.
        task = await self._tasks.estimated(task)
        changes = _Changes(
            task,
            changed,
            [WatchUpdate(task, subtask, snapshot=snapshot) for subtask in changed],
            WatchUpdate(task, None, snapshot=snapshot),
            snapshot=snapshot,
            has_subtasks=subtasks,
        )
        return Round(since, task.version, changes)


def _retrieve_quietly(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # the watchers saw it; do not log it again as unretrieved
