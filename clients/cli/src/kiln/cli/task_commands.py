"""`kiln task ...`, `kiln image get`, `kiln queues` and `kiln workers`."""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from google.protobuf import field_mask_pb2

from kiln.cli import output, spec
from kiln.cli.errors import CliError
from kiln.cli.session import Session
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

TERMINAL = {
    tasks_pb2.TASK_STATE_SUCCEEDED,
    tasks_pb2.TASK_STATE_PARTIALLY_FAILED,
    tasks_pb2.TASK_STATE_FAILED,
    tasks_pb2.TASK_STATE_CANCELLED,
}
# Enum values by their short names; protobuf takes the full names in constructors.
STATES = {output.enum_name(n): n for n, v in tasks_pb2.TaskState.items() if v}
SUBTASK_STATES = {output.enum_name(n): n for n, v in tasks_pb2.SubtaskState.items() if v}


def _tasks(session: Session) -> Any:
    return tasks_pb2_grpc.TaskServiceStub(session.channel(session.tasks_target))


def _system(session: Session) -> Any:
    return tasks_pb2_grpc.SystemServiceStub(session.channel(session.tasks_target))


def _task_row(task: tasks_pb2.Task) -> tuple[Any, ...]:
    return (
        task.id,
        task.task_name,
        output.enum_name(tasks_pb2.TaskState.Name(task.state)),
        f"{task.succeeded_count}/{task.total_images}",
        task.failed_count,
        f"{task.progress:.0%}",
        task.create_time.ToJsonString() if task.HasField("create_time") else "",
    )


TASK_HEADERS = ["ID", "NAME", "STATE", "DONE", "FAILED", "PROGRESS", "CREATED"]


def waiting_line(task: tasks_pb2.Task) -> str:
    """Why the task's waiting subtasks do not run yet, for people; "" when none wait."""
    queue = output.enum_name(tasks_pb2.Queue.Name(task.settings.queue))
    reason = task.wait_reason
    if reason == tasks_pb2.WAIT_REASON_QUEUED:
        eta = f", ETA {task.eta.ToTimedelta().total_seconds():.0f}s" if task.HasField("eta") else ""
        return f"waiting its turn: {task.queue_position} jobs ahead in queue {queue}{eta}"
    if reason == tasks_pb2.WAIT_REASON_TASK_PAUSED:
        return f"paused: nothing more starts until `kiln task resume {task.id}`"
    if reason == tasks_pb2.WAIT_REASON_QUEUE_PAUSED:
        return f"waiting: an admin paused queue {queue}"
    if reason == tasks_pb2.WAIT_REASON_NO_WORKER:
        return f"waiting: no live worker serves queue {queue}; it starts when one does"
    return ""


def _show_task(task: tasks_pb2.Task, as_json: bool) -> None:
    if as_json:
        output.print_json(task)
        return
    output.print_table(TASK_HEADERS, [_task_row(task)])
    if line := waiting_line(task):
        print(line)


def create(session: Session, args: argparse.Namespace) -> None:
    """Creates a task from a spec file; with --watch, follows it to the end."""
    request = spec.load(Path(args.spec))
    request.validate_only = args.validate_only
    response = _tasks(session).CreateTask(request, metadata=session.metadata(), timeout=60)
    if args.validate_only:
        eta = response.eta.ToTimedelta().total_seconds()
        if args.json:
            output.print_json(response)
        else:
            print(f"valid: {response.task.total_images} images, ETA {eta:.0f}s")
        return
    if args.json and not args.watch:
        output.print_json(response.task)
    elif not args.json:
        print(f"created task {response.task.id} ({response.task.total_images} images)")
    if args.watch:
        _watch(session, response.task.id, args.json)


def watch(session: Session, args: argparse.Namespace) -> None:
    """Follows a task live until it ends."""
    _watch(session, args.task_id, args.json)


def _watch(session: Session, task_id: str, as_json: bool) -> None:
    bar = output.ProgressLine()
    last: tasks_pb2.Task | None = None
    version = 0
    # A dropped stream resumes from the last version seen, so nothing is missed.
    for _attempt in range(5):
        stream = _tasks(session).WatchTask(
            tasks_pb2.WatchTaskRequest(task_id=task_id, after_version=version),
            metadata=session.metadata(),
        )
        for update in stream:
            last = update.task
            version = max(version, last.version)
            if as_json:
                print(json.dumps(output.as_dict(update.task), sort_keys=True), flush=True)
            else:
                bar.update(
                    last.succeeded_count,
                    last.failed_count + last.cancelled_count,
                    last.total_images,
                    output.enum_name(tasks_pb2.TaskState.Name(last.state)),
                )
        if last is not None and last.state in TERMINAL:
            break
    bar.close()
    if last is not None and not as_json:
        print(f"task {last.id} {output.enum_name(tasks_pb2.TaskState.Name(last.state))}")


def list_tasks(session: Session, args: argparse.Namespace) -> None:
    """Lists tasks, newest first."""
    found: list[tasks_pb2.Task] = []
    token = ""
    states = [STATES[s] for s in args.state or []]
    while True:
        response = _tasks(session).ListTasks(
            tasks_pb2.ListTasksRequest(
                page_size=min(args.limit, 1000),
                page_token=token,
                states=states,
                tag=args.tag or "",
                search=args.search or "",
                owner_id=args.owner or "",
            ),
            metadata=session.metadata(),
            timeout=30,
        )
        found.extend(response.tasks)
        token = response.next_page_token
        if not token or len(found) >= args.limit:
            break
    found = found[: args.limit]
    if args.json:
        output.print_json([output.as_dict(t) for t in found])
    else:
        output.print_table(TASK_HEADERS, [_task_row(t) for t in found])


def get(session: Session, args: argparse.Namespace) -> None:
    """Shows one task."""
    task = (
        _tasks(session)
        .GetTask(
            tasks_pb2.GetTaskRequest(task_id=args.task_id), metadata=session.metadata(), timeout=30
        )
        .task
    )
    _show_task(task, args.json)


def cancel(session: Session, args: argparse.Namespace) -> None:
    """Cancels a task."""
    task = (
        _tasks(session)
        .CancelTask(
            tasks_pb2.CancelTaskRequest(task_id=args.task_id),
            metadata=session.metadata(),
            timeout=30,
        )
        .task
    )
    _show_task(task, args.json)


def pause(session: Session, args: argparse.Namespace) -> None:
    """Holds a task's waiting subtasks; running ones finish."""
    task = (
        _tasks(session)
        .PauseTask(
            tasks_pb2.PauseTaskRequest(task_id=args.task_id),
            metadata=session.metadata(),
            timeout=30,
        )
        .task
    )
    _show_task(task, args.json)


def resume(session: Session, args: argparse.Namespace) -> None:
    """Lets a paused task's waiting subtasks be dispatched again."""
    task = (
        _tasks(session)
        .ResumeTask(
            tasks_pb2.ResumeTaskRequest(task_id=args.task_id),
            metadata=session.metadata(),
            timeout=30,
        )
        .task
    )
    _show_task(task, args.json)


def priority(session: Session, args: argparse.Namespace) -> None:
    """Changes an unfinished task's priority (0..9; higher goes first)."""
    task = (
        _tasks(session)
        .UpdateTask(
            tasks_pb2.UpdateTaskRequest(
                task=tasks_pb2.Task(id=args.task_id, priority=args.priority),
                update_mask=field_mask_pb2.FieldMask(paths=["priority"]),
            ),
            metadata=session.metadata(),
            timeout=30,
        )
        .task
    )
    _show_task(task, args.json)


def retry(session: Session, args: argparse.Namespace) -> None:
    """Re-queues a task's failed and cancelled subtasks."""
    response = _tasks(session).RetryTask(
        tasks_pb2.RetryTaskRequest(task_id=args.task_id), metadata=session.metadata(), timeout=30
    )
    if args.json:
        output.print_json(response)
    else:
        print(f"re-queued {response.retried_count} subtasks of task {args.task_id}")


def delete(session: Session, args: argparse.Namespace) -> None:
    """Soft-deletes a task."""
    _tasks(session).DeleteTask(
        tasks_pb2.DeleteTaskRequest(task_id=args.task_id), metadata=session.metadata(), timeout=30
    )
    print(f"deleted task {args.task_id}")


def _subtasks(session: Session, task_id: str, states: list[str]) -> Iterator[tasks_pb2.Subtask]:
    token = ""
    while True:
        response = _tasks(session).ListSubtasks(
            tasks_pb2.ListSubtasksRequest(
                task_id=task_id, page_size=1000, page_token=token, states=states
            ),
            metadata=session.metadata(),
            timeout=60,
        )
        yield from response.subtasks
        token = response.next_page_token
        if not token:
            return


def subtasks(session: Session, args: argparse.Namespace) -> None:
    """Lists a task's subtasks."""
    found = list(_subtasks(session, args.task_id, [SUBTASK_STATES[s] for s in args.state or []]))
    if args.json:
        output.print_json([output.as_dict(s) for s in found])
        return
    output.print_table(
        ["INDEX", "ID", "STATE", "SEED", "PROMPT", "ERROR"],
        [
            (
                s.index,
                s.id,
                output.enum_name(tasks_pb2.SubtaskState.Name(s.state)),
                s.seed,
                s.prompt[:60],
                s.error.message[:60],
            )
            for s in found
        ],
    )


def _fetch_image(
    session: Session, subtask_id: str, thumbnail: bool
) -> tuple[tasks_pb2.ImageMetadata, bytes]:
    metadata: tasks_pb2.ImageMetadata | None = None
    chunks: list[bytes] = []
    for part in _tasks(session).GetImage(
        tasks_pb2.GetImageRequest(subtask_id=subtask_id, thumbnail=thumbnail),
        metadata=session.metadata(),
        timeout=300,
    ):
        if part.HasField("metadata"):
            metadata = part.metadata
        else:
            chunks.append(part.chunk)
    if metadata is None:
        raise CliError(f"the server sent no metadata for image {subtask_id}")
    data = b"".join(chunks)
    if not thumbnail and metadata.sha256 and hashlib.sha256(data).hexdigest() != metadata.sha256:
        raise CliError(f"image {subtask_id} arrived damaged (sha256 mismatch); try again")
    return metadata, data


def image_get(session: Session, args: argparse.Namespace) -> None:
    """Saves one subtask's image."""
    metadata, data = _fetch_image(session, args.subtask_id, args.thumbnail)
    Path(args.output).write_bytes(data)
    if args.json:
        output.print_json(metadata)
    else:
        print(f"saved {len(data)} bytes ({metadata.content_type}) to {args.output}")


def download(session: Session, args: argparse.Namespace) -> None:
    """Saves every image of a task and a manifest of prompts and seeds."""
    directory = Path(args.directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = []
    for subtask in _subtasks(session, args.task_id, ["SUBTASK_STATE_SUCCEEDED"]):
        metadata, data = _fetch_image(session, subtask.id, False)
        extension = mimetypes.guess_extension(metadata.content_type) or ".bin"
        name = f"{subtask.index:05d}{extension}"
        (directory / name).write_bytes(data)
        manifest.append({
            "file": name, "subtask_id": subtask.id, "index": subtask.index,
            "prompt": subtask.prompt, "polished_prompt": subtask.polished_prompt,
            "negative_prompt": subtask.negative_prompt, "seed": subtask.seed,
            "variables": dict(subtask.variable_values), "width": metadata.width,
            "height": metadata.height, "sha256": metadata.sha256,
        })  # fmt: skip
    (directory / "manifest.json").write_text(
        json.dumps({"task_id": args.task_id, "images": manifest}, indent=2, sort_keys=True)
    )
    print(f"saved {len(manifest)} images and manifest.json to {directory}")


QUEUE_NAMES = {output.enum_name(n): n for n, v in tasks_pb2.Queue.items() if v}


def queues(session: Session, args: argparse.Namespace) -> None:
    """Shows queue statistics, or pauses / resumes a queue."""
    if args.action in ("pause", "resume"):
        if args.queue not in QUEUE_NAMES:
            raise CliError(f"unknown queue {args.queue!r}; known: {', '.join(QUEUE_NAMES)}", 2)
        queue = QUEUE_NAMES[args.queue]
        if args.action == "pause":
            _system(session).PauseQueue(
                tasks_pb2.PauseQueueRequest(queue=queue), metadata=session.metadata(), timeout=30
            )
        else:
            _system(session).ResumeQueue(
                tasks_pb2.ResumeQueueRequest(queue=queue), metadata=session.metadata(), timeout=30
            )
        print(f"queue {args.queue} {args.action}d")
        return
    stats = _system(session).GetQueueStats(
        tasks_pb2.GetQueueStatsRequest(), metadata=session.metadata(), timeout=30
    )
    if args.json:
        output.print_json([output.as_dict(q) for q in stats.queues])
        return
    output.print_table(
        ["QUEUE", "WAITING", "PENDING", "IN FLIGHT", "REDELIVERED", "CONSUMERS", "PAUSED"],
        [
            (
                output.enum_name(tasks_pb2.Queue.Name(q.queue)),
                q.waiting_dispatch,
                q.pending,
                q.in_flight,
                q.redelivered,
                q.consumers,
                q.paused,
            )
            for q in stats.queues
        ],
    )


def workers(session: Session, args: argparse.Namespace) -> None:
    """Lists live workers."""
    response = _system(session).ListWorkers(
        tasks_pb2.ListWorkersRequest(), metadata=session.metadata(), timeout=30
    )
    if args.json:
        output.print_json([output.as_dict(w) for w in response.workers])
        return
    output.print_table(
        ["WORKER", "QUEUES", "CONCURRENCY", "IN FLIGHT", "PROCESSED", "FAILED", "VERSION"],
        [
            (
                w.worker_id,
                ",".join(output.enum_name(tasks_pb2.Queue.Name(q)) for q in w.queues),
                w.concurrency,
                w.in_flight,
                w.processed,
                w.failed,
                w.version,
            )
            for w in response.workers
        ],
    )
