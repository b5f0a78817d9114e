"""gRPC adapters of the tasks service: proto <-> domain, nothing else."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from typing import Any

from nats.js import JetStreamContext

from kiln.common import errors, vocabulary
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from tasks import convert, filters, grid, images, service, slices, system

Context = Any  # grpc.aio.ServicerContext; grpc ships no annotations


def _states(values: Any, names: dict[int, str], field: str) -> list[str]:
    unknown = [v for v in values if v not in names]
    if unknown:
        raise errors.InvalidArgument.field(field, f"unknown state values {unknown}")
    return sorted({names[v] for v in values})


class TaskServicer(tasks_pb2_grpc.TaskServiceServicer):
    """TaskService."""

    def __init__(
        self, tasks: service.Tasks, watches: service.Watches, js: JetStreamContext
    ) -> None:
        self._tasks = tasks
        self._watches = watches
        self._js = js
        self._grids = grid.Grids(tasks)
        self._slices = slices.Slices(tasks)

    async def CreateTask(
        self, request: tasks_pb2.CreateTaskRequest, context: Context
    ) -> tasks_pb2.CreateTaskResponse:
        task, eta = await self._tasks.create(
            convert.task_spec(request), validate_only=request.validate_only
        )
        return tasks_pb2.CreateTaskResponse(
            task=convert.task_proto(task), eta=convert.duration(eta)
        )

    async def GetTask(
        self, request: tasks_pb2.GetTaskRequest, context: Context
    ) -> tasks_pb2.GetTaskResponse:
        task = await self._tasks.get(request.task_id)
        return tasks_pb2.GetTaskResponse(task=self._tasks.reads.message(task))

    async def ListTasks(
        self, request: tasks_pb2.ListTasksRequest, context: Context
    ) -> tasks_pb2.ListTasksResponse:
        page, token = await self._tasks.list_tasks(
            page_size=request.page_size,
            page_token=request.page_token,
            states=_states(request.states, convert.TASK_STATE_NAMES, "states"),
            tag=request.tag,
            search=request.search,
            owner_id=request.owner_id,
        )
        return tasks_pb2.ListTasksResponse(
            tasks=[self._tasks.reads.message(t) for t in page], next_page_token=token
        )

    async def ListSubtasks(
        self, request: tasks_pb2.ListSubtasksRequest, context: Context
    ) -> tasks_pb2.ListSubtasksResponse:
        variables = filters.parse(request.variable_filters)
        page, token = await self._tasks.list_subtasks(
            request.task_id,
            page_size=request.page_size,
            page_token=request.page_token,
            states=_states(request.states, convert.SUBTASK_STATE_NAMES, "states"),
            variables=variables,
        )
        return tasks_pb2.ListSubtasksResponse(
            subtasks=[convert.subtask_proto(s) for s in page], next_page_token=token
        )

    async def GetTaskGrid(
        self, request: tasks_pb2.GetTaskGridRequest, context: Context
    ) -> tasks_pb2.GetTaskGridResponse:
        found = await self._grids.get(
            request.task_id, request.row_variable, request.column_variable
        )
        return tasks_pb2.GetTaskGridResponse(grid=_grid_proto(found))

    async def CancelTask(
        self, request: tasks_pb2.CancelTaskRequest, context: Context
    ) -> tasks_pb2.CancelTaskResponse:
        where = filters.parse(request.variable_filters)
        if where:
            task = await self._slices.cancel(request.task_id, where)
        else:
            task = await self._tasks.cancel(request.task_id)
        return tasks_pb2.CancelTaskResponse(task=convert.task_proto(task))

    async def DeleteTask(
        self, request: tasks_pb2.DeleteTaskRequest, context: Context
    ) -> tasks_pb2.DeleteTaskResponse:
        await self._tasks.delete(request.task_id)
        return tasks_pb2.DeleteTaskResponse()

    async def RetryTask(
        self, request: tasks_pb2.RetryTaskRequest, context: Context
    ) -> tasks_pb2.RetryTaskResponse:
        where = filters.parse(request.variable_filters)
        if where:
            task, count = await self._slices.retry(request.task_id, where)
        else:
            task, count = await self._tasks.retry(request.task_id)
        return tasks_pb2.RetryTaskResponse(task=convert.task_proto(task), retried_count=count)

    async def PauseTask(
        self, request: tasks_pb2.PauseTaskRequest, context: Context
    ) -> tasks_pb2.PauseTaskResponse:
        where = filters.parse(request.variable_filters)
        if where:
            task = await self._slices.set_paused(request.task_id, where, True)
        else:
            task = await self._tasks.set_paused(request.task_id, True)
        return tasks_pb2.PauseTaskResponse(task=convert.task_proto(task))

    async def ResumeTask(
        self, request: tasks_pb2.ResumeTaskRequest, context: Context
    ) -> tasks_pb2.ResumeTaskResponse:
        where = filters.parse(request.variable_filters)
        if where:
            task = await self._slices.set_paused(request.task_id, where, False)
        else:
            task = await self._tasks.set_paused(request.task_id, False)
        return tasks_pb2.ResumeTaskResponse(task=convert.task_proto(task))

    async def UpdateTask(
        self, request: tasks_pb2.UpdateTaskRequest, context: Context
    ) -> tasks_pb2.UpdateTaskResponse:
        task = await self._tasks.update(
            request.task.id, list(request.update_mask.paths), request.task.priority
        )
        return tasks_pb2.UpdateTaskResponse(task=convert.task_proto(task))

    async def WatchTask(
        self, request: tasks_pb2.WatchTaskRequest, context: Context
    ) -> AsyncIterator[bytes]:
        # Yields encoded messages (the interceptors' serializer passes bytes through): an
        # update shared by many watchers is encoded once for all of them.
        grid_version = -1
        async for update in self._watches.watch(
            request.task_id,
            request.after_version,
            request.include_subtasks,
            batch=request.batch_subtasks,
        ):
            if update.wire is None:
                update.wire = _watch_messages(update)
            *leading, last = update.wire
            for message in leading:
                yield message
            if request.include_grid and update.task.version > grid_version:
                # The grid rides along when the task moved past the last one sent. Encoded
                # protobuf messages merge when concatenated, so the shared bytes are kept and
                # this watcher's grid is appended to the update's last message.
                latest = await self._grids.latest(update.task.id, update.task.version)
                if latest is not None:
                    grid_version = latest.version
                    extra = tasks_pb2.WatchTaskResponse(grid=_grid_proto(latest))
                    yield last + extra.SerializeToString()
                    continue
            yield last

    async def GetImage(
        self, request: tasks_pb2.GetImageRequest, context: Context
    ) -> AsyncIterator[tasks_pb2.GetImageResponse]:
        subtask, content_type, data = await images.read_image(
            self._tasks, self._js, request.subtask_id, request.thumbnail
        )
        yield tasks_pb2.GetImageResponse(
            metadata=tasks_pb2.ImageMetadata(
                subtask_id=subtask.id,
                task_id=subtask.task_id,
                content_type=content_type,
                size_bytes=len(data),
                width=(subtask.result_width or subtask.width) if not request.thumbnail else 0,
                height=(subtask.result_height or subtask.height) if not request.thumbnail else 0,
                sha256=hashlib.sha256(data).hexdigest(),
                prompt=subtask.polished_prompt or subtask.prompt,
                seed=subtask.seed,
            )
        )
        async for piece in images.chunks(data):
            yield tasks_pb2.GetImageResponse(chunk=piece)


def _counts_proto(counts: grid.Counts) -> tasks_pb2.SubtaskCounts:
    return tasks_pb2.SubtaskCounts(**dataclasses.asdict(counts))


def _grid_proto(found: grid.Grid) -> tasks_pb2.TaskGrid:
    message = tasks_pb2.TaskGrid(
        task_id=found.task_id, version=found.version, total=_counts_proto(found.total)
    )
    for name, values in found.variables.items():
        message.variables.append(
            tasks_pb2.VariableCounts(
                name=name,
                values=[
                    tasks_pb2.ValueCounts(value=v, counts=_counts_proto(c))
                    for v, c in values.items()
                ],
            )
        )
    table = found.table
    if table is not None:
        message.table.CopyFrom(
            tasks_pb2.GridTable(
                row_variable=table.row_variable,
                column_variable=table.column_variable,
                row_values=table.row_values,
                column_values=table.column_values,
                cells=[
                    tasks_pb2.GridCell(row_value=r, column_value=c, counts=_counts_proto(n))
                    for (r, c), n in table.cells.items()
                ],
            )
        )
    return message


BATCH_MAX_SUBTASKS = 500
"""Subtasks in one batched WatchTask message at most (documented in tasks.proto)."""
BATCH_MAX_BYTES = 1 << 20
"""Encoded subtasks in one batched message at most, well below clients' 4 MiB default."""


def _watch_messages(update: service.WatchUpdate) -> list[bytes]:
    """The encoded WatchTask messages of one update. A batch too large for one message is
    split; only its last piece carries the task, so a client that resumes from the last task
    version it saw never skips the pieces it missed."""
    task = convert.task_proto(update.task)
    if update.batch is None:
        message = tasks_pb2.WatchTaskResponse(task=task, snapshot=update.snapshot)
        if update.subtask is not None:
            message.subtask.CopyFrom(convert.subtask_proto(update.subtask))
        return [message.SerializeToString()]
    pieces: list[list[tasks_pb2.Subtask]] = [[]]
    size = 0
    for subtask in update.batch:
        encoded = convert.subtask_proto(subtask)
        weight = encoded.ByteSize()
        if pieces[-1] and (
            len(pieces[-1]) >= BATCH_MAX_SUBTASKS or size + weight > BATCH_MAX_BYTES
        ):
            pieces.append([])
            size = 0
        pieces[-1].append(encoded)
        size += weight
    messages = [
        tasks_pb2.WatchTaskResponse(subtasks=piece, snapshot=update.snapshot).SerializeToString()
        for piece in pieces[:-1]
    ]
    last = tasks_pb2.WatchTaskResponse(task=task, subtasks=pieces[-1], snapshot=update.snapshot)
    messages.append(last.SerializeToString())
    return messages


def _queue_proto(stats: system.QueueStats) -> tasks_pb2.QueueStats:
    return tasks_pb2.QueueStats(
        queue=vocabulary.QUEUE_ENUMS[stats.queue],
        pending=stats.pending,
        in_flight=stats.in_flight,
        redelivered=stats.redelivered,
        consumers=stats.consumers,
        oldest_age=convert.duration(stats.oldest_age),
        paused=stats.paused,
        waiting_dispatch=stats.waiting_dispatch,
    )


def _queue_name(value: int) -> str:
    # An unset or unknown queue becomes "", which the use case refuses after the role check.
    return "" if value == tasks_pb2.QUEUE_UNSPECIFIED else vocabulary.QUEUE_NAMES.get(value, "")


class SystemServicer(tasks_pb2_grpc.SystemServiceServicer):
    """SystemService (admin only)."""

    def __init__(self, system_: system.System) -> None:
        self._system = system_

    async def GetSystemStats(
        self, request: tasks_pb2.GetSystemStatsRequest, context: Context
    ) -> tasks_pb2.GetSystemStatsResponse:
        stats = await self._system.stats()
        return tasks_pb2.GetSystemStatsResponse(
            tasks_by_state=[
                tasks_pb2.StateCount(state=s, count=n) for s, n in stats.tasks_by_state.items()
            ],
            subtasks_by_state=[
                tasks_pb2.StateCount(state=s, count=n) for s, n in stats.subtasks_by_state.items()
            ],
            images_last_minute=stats.images_last_minute,
            images_per_minute_last_hour=stats.images_per_minute_last_hour,
            outbox_backlog=stats.outbox_backlog,
            live_workers=stats.live_workers,
        )

    async def GetQueueStats(
        self, request: tasks_pb2.GetQueueStatsRequest, context: Context
    ) -> tasks_pb2.GetQueueStatsResponse:
        queues = await self._system.queues()
        return tasks_pb2.GetQueueStatsResponse(queues=[_queue_proto(q) for q in queues])

    async def ListWorkers(
        self, request: tasks_pb2.ListWorkersRequest, context: Context
    ) -> tasks_pb2.ListWorkersResponse:
        beats = await self._system.workers()
        workers = []
        for beat in beats:
            worker = tasks_pb2.Worker(
                worker_id=beat.worker_id,
                queues=[
                    vocabulary.QUEUE_ENUMS[q] for q in beat.queues if q in vocabulary.QUEUE_ENUMS
                ],
                concurrency=beat.concurrency,
                in_flight=beat.in_flight,
                processed=beat.processed,
                failed=beat.failed,
                version=beat.version,
                hostname=beat.hostname,
            )
            worker.start_time.CopyFrom(beat.start_time)
            worker.heartbeat_time.CopyFrom(beat.time)
            workers.append(worker)
        return tasks_pb2.ListWorkersResponse(workers=workers)

    async def PauseQueue(
        self, request: tasks_pb2.PauseQueueRequest, context: Context
    ) -> tasks_pb2.PauseQueueResponse:
        stats = await self._system.set_paused(_queue_name(request.queue), True)
        return tasks_pb2.PauseQueueResponse(queue=_queue_proto(stats))

    async def ResumeQueue(
        self, request: tasks_pb2.ResumeQueueRequest, context: Context
    ) -> tasks_pb2.ResumeQueueResponse:
        stats = await self._system.set_paused(_queue_name(request.queue), False)
        return tasks_pb2.ResumeQueueResponse(queue=_queue_proto(stats))
