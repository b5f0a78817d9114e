"""Proto <-> domain conversions of the tasks service (no I/O)."""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2

from kiln.common import vocabulary
from kiln.common.timestamps import timestamp
from kiln.tasks.v1 import tasks_pb2
from tasks import model, spec

WEBHOOK_EVENT_NAMES: dict[int, str] = {
    tasks_pb2.WEBHOOK_EVENT_TASK_FINISHED: "task_finished",
    tasks_pb2.WEBHOOK_EVENT_SUBTASK_FINISHED: "subtask_finished",
}
WEBHOOK_EVENT_ENUMS: dict[str, Any] = {v: k for k, v in WEBHOOK_EVENT_NAMES.items()}
TASK_STATE_ENUMS: dict[str, Any] = {
    model.PENDING: tasks_pb2.TASK_STATE_PENDING,
    model.RUNNING: tasks_pb2.TASK_STATE_RUNNING,
    model.SUCCEEDED: tasks_pb2.TASK_STATE_SUCCEEDED,
    model.PARTIALLY_FAILED: tasks_pb2.TASK_STATE_PARTIALLY_FAILED,
    model.FAILED: tasks_pb2.TASK_STATE_FAILED,
    model.CANCELLED: tasks_pb2.TASK_STATE_CANCELLED,
}
TASK_STATE_NAMES: dict[int, str] = {v: k for k, v in TASK_STATE_ENUMS.items()}
SUBTASK_STATE_ENUMS: dict[str, Any] = {
    model.PENDING: tasks_pb2.SUBTASK_STATE_PENDING,
    model.QUEUED: tasks_pb2.SUBTASK_STATE_QUEUED,
    model.RUNNING: tasks_pb2.SUBTASK_STATE_RUNNING,
    model.SUCCEEDED: tasks_pb2.SUBTASK_STATE_SUCCEEDED,
    model.FAILED: tasks_pb2.SUBTASK_STATE_FAILED,
    model.CANCELLED: tasks_pb2.SUBTASK_STATE_CANCELLED,
}
SUBTASK_STATE_NAMES: dict[int, str] = {v: k for k, v in SUBTASK_STATE_ENUMS.items()}


def _enum_name(names: dict[int, str], value: int, kind: str) -> str:
    # An unknown number becomes a name validation refuses, with the number in the message.
    return names.get(value, f"{kind}({value})")


def task_spec(request: tasks_pb2.CreateTaskRequest) -> spec.TaskSpec:
    """The TaskSpec of a CreateTask request; variables in a fixed (sorted) order."""
    settings = request.settings
    webhook = None
    if settings.HasField("webhook"):
        webhook = spec.WebhookSpec(
            url=settings.webhook.url,
            secret=settings.webhook.secret,
            events=tuple(
                _enum_name(WEBHOOK_EVENT_NAMES, e, "WebhookEvent") for e in settings.webhook.events
            ),
        )
    return spec.TaskSpec(
        task_name=request.task_name,
        prompt_template=request.prompt_template,
        variables={
            name: tuple(request.variables[name].values) for name in sorted(request.variables)
        },
        zip_groups=tuple(tuple(g.variables) for g in request.zip_groups),
        images_per_combination=request.images_per_combination,
        ratio=settings.ratio,
        seed=settings.seed if settings.HasField("seed") else None,
        use_polish=settings.use_polish,
        queue=_enum_name(vocabulary.QUEUE_NAMES, settings.queue, "Queue"),
        negative_prompt=settings.negative_prompt,
        output_format=_enum_name(
            vocabulary.OUTPUT_FORMAT_NAMES, settings.output_format, "OutputFormat"
        ),
        priority=request.priority,
        tags=tuple(request.tags),
        webhook=webhook,
        reuse_results=settings.reuse_results,
        share_results=settings.share_results,
        request_id=request.request_id,
    )


def duration(seconds: float | None) -> duration_pb2.Duration | None:
    """A proto duration, or None."""
    if seconds is None:
        return None
    value = duration_pb2.Duration()
    value.FromMilliseconds(max(0, round(seconds * 1000)))
    return value


WAIT_REASONS = {
    model.WAIT_QUEUED: tasks_pb2.WAIT_REASON_QUEUED,
    model.WAIT_TASK_PAUSED: tasks_pb2.WAIT_REASON_TASK_PAUSED,
    model.WAIT_QUEUE_PAUSED: tasks_pb2.WAIT_REASON_QUEUE_PAUSED,
    model.WAIT_NO_WORKER: tasks_pb2.WAIT_REASON_NO_WORKER,
}


def task_proto(task: model.Task) -> tasks_pb2.Task:
    """The Task message of a task; the webhook secret is never included.

    Fields are set in place (no intermediate messages copied in): ListTasks converts a
    page of 50 of these per call."""
    message = tasks_pb2.Task(
        id=task.id,
        task_name=task.task_name,
        owner_id=task.owner_id,
        tags=task.tags,
        prompt_template=task.prompt_template,
        images_per_combination=task.images_per_combination,
        priority=task.priority,
        state=TASK_STATE_ENUMS[task.state],
        total_images=task.total_images,
        succeeded_count=task.succeeded_count,
        failed_count=task.failed_count,
        cancelled_count=task.cancelled_count,
        running_count=task.running_count,
        progress=(task.ended / task.total_images) if task.total_images else 0.0,
        all_subtasks_completed=task.all_subtasks_completed,
        is_deleted=task.is_deleted,
        version=task.version,
        paused=task.paused,
    )
    variables = message.variables
    for name, values in task.variables.items():
        variables[name].values.extend(values)
    for group in task.zip_groups:
        message.zip_groups.add().variables.extend(group)
    settings = message.settings
    settings.ratio = task.ratio
    settings.use_polish = task.use_polish
    settings.queue = vocabulary.QUEUE_ENUMS.get(task.queue, tasks_pb2.QUEUE_UNSPECIFIED)
    settings.negative_prompt = task.negative_prompt
    settings.output_format = vocabulary.OUTPUT_FORMAT_ENUMS.get(
        task.output_format, tasks_pb2.OUTPUT_FORMAT_UNSPECIFIED
    )
    settings.reuse_results = task.reuse_results
    settings.share_results = task.share_results
    if task.seed is not None:
        settings.seed = task.seed
    if task.webhook_url:
        settings.webhook.url = task.webhook_url
        settings.webhook.events.extend(WEBHOOK_EVENT_ENUMS[e] for e in task.webhook_events)
    if task.create_time is not None:
        message.create_time.FromDatetime(task.create_time)
    if task.start_time is not None:
        message.start_time.FromDatetime(task.start_time)
    if task.finish_time is not None:
        message.finish_time.FromDatetime(task.finish_time)
    if task.update_time is not None:
        message.update_time.FromDatetime(task.update_time)
    set_estimates(message, task)
    return message


def set_estimates(message: tasks_pb2.Task, task: model.Task) -> None:
    """Sets the fields computed when the task is read: queue position, wait reason, ETA."""
    if task.queue_position:
        message.queue_position = task.queue_position
    if task.wait_reason:
        message.wait_reason = WAIT_REASONS.get(task.wait_reason, tasks_pb2.WAIT_REASON_UNSPECIFIED)
    if task.eta_seconds is not None and not task.is_terminal:
        message.eta.FromMilliseconds(max(0, round(task.eta_seconds * 1000)))


def subtask_proto(subtask: model.Subtask) -> tasks_pb2.Subtask:
    """The Subtask message of a subtask."""
    message = tasks_pb2.Subtask(
        id=subtask.id,
        task_id=subtask.task_id,
        index=subtask.idx,
        variable_values=subtask.variable_values,
        prompt=subtask.prompt,
        negative_prompt=subtask.negative_prompt,
        polished_prompt=subtask.polished_prompt,
        ratio=subtask.ratio,
        width=subtask.width,
        height=subtask.height,
        seed=subtask.seed,
        use_polish=subtask.use_polish,
        queue=vocabulary.QUEUE_ENUMS.get(subtask.queue, tasks_pb2.QUEUE_UNSPECIFIED),
        state=SUBTASK_STATE_ENUMS[subtask.state],
        attempt=subtask.attempt,
        retried_from=subtask.retried_from or "",
        worker_id=subtask.worker_id,
        reused_from=subtask.reused_from or "",
        held=subtask.held,
    )
    if subtask.error_type:
        message.error.type = subtask.error_type
        message.error.message = subtask.error_message or ""
    if subtask.state == model.SUCCEEDED and subtask.object_name:
        message.result.CopyFrom(
            tasks_pb2.ImageResult(
                object_name=subtask.object_name,
                content_type=subtask.content_type or "",
                width=subtask.result_width or 0,
                height=subtask.result_height or 0,
                size_bytes=subtask.size_bytes or 0,
                sha256=subtask.sha256 or "",
            )
        )
    for field, value in (
        ("queue_time", subtask.queue_time),
        ("start_time", subtask.start_time),
        ("finish_time", subtask.finish_time),
    ):
        stamp = timestamp(value)
        if stamp is not None:
            getattr(message, field).CopyFrom(stamp)
    if subtask.render_ms is not None:
        message.render_duration.FromMilliseconds(subtask.render_ms)
    return message
