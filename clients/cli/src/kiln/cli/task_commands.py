"""`kiln task ...`, `kiln image get`, `kiln queues` and `kiln workers`."""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
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


# Exit codes of `task watch --exit-status` (and `task create --watch --exit-status`) by the
# state the task ended in; 1 and 2 stay the CLI's own error and usage codes.
EXIT_CODES = {
    tasks_pb2.TASK_STATE_SUCCEEDED: 0,
    tasks_pb2.TASK_STATE_FAILED: 3,
    tasks_pb2.TASK_STATE_PARTIALLY_FAILED: 4,
    tasks_pb2.TASK_STATE_CANCELLED: 5,
}


def rendered_progress(task: tasks_pb2.Task) -> float:
    """The share of images rendered (succeeded or failed), 0..1.

    The server's `progress` counts cancelled subtasks as ended, so a task cancelled early
    would read 100%; people want to see how far it got.
    """
    if not task.total_images:
        return 0.0
    return (task.succeeded_count + task.failed_count) / task.total_images


def state_label(task: tasks_pb2.Task) -> str:
    """`running`, or `cancelled (deleted)` for a soft-deleted task."""
    state = output.enum_name(tasks_pb2.TaskState.Name(task.state))
    return f"{state} (deleted)" if task.is_deleted else state


def _task_row(task: tasks_pb2.Task) -> tuple[Any, ...]:
    return (
        task.id,
        task.task_name,
        state_label(task),
        f"{task.succeeded_count}/{task.total_images}",
        task.failed_count,
        f"{rendered_progress(task):.0%}",
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


def task_table(task: tasks_pb2.Task) -> None:
    """One task as a table row, with why it waits and whether it was deleted."""
    output.print_table(TASK_HEADERS, [_task_row(task)])
    if task.is_deleted:
        print("deleted: this task no longer appears in `kiln task list`")
    elif line := waiting_line(task):
        print(line)


def _show_task(task: tasks_pb2.Task, fmt: str) -> None:
    output.show(fmt, task, lambda: task_table(task))


def create(session: Session, args: argparse.Namespace) -> None:
    """Creates a task from a spec file; with --watch, follows it to the end.

    JSON and YAML print the task in both cases (for --validate-only, the preview with the
    estimate in its `eta`), so a script reads one shape.
    """
    request = spec.load(Path(args.spec))
    request.validate_only = args.validate_only
    response = _tasks(session).CreateTask(request, metadata=session.metadata(), timeout=60)
    task = response.task
    if not task.HasField("eta") and response.HasField("eta"):
        task.eta.CopyFrom(response.eta)
    if args.validate_only:
        eta = response.eta.ToTimedelta().total_seconds()
        output.show(
            args.output_format,
            task,
            lambda: print(f"valid: {task.total_images} images, ETA {eta:.0f}s"),
        )
        return
    if not args.watch:
        output.show(
            args.output_format,
            task,
            lambda: print(f"created task {task.id} ({task.total_images} images)"),
        )
        return
    if args.output_format == "table":
        print(f"created task {task.id} ({task.total_images} images)", flush=True)
    _finish_watch(
        _watch(session, task.id, args.output_format, subtasks=args.subtasks), args.exit_status
    )


def watch(session: Session, args: argparse.Namespace) -> None:
    """Follows a task live until it ends."""
    _finish_watch(
        _watch(session, args.task_id, args.output_format, subtasks=args.subtasks),
        args.exit_status,
    )


def _finish_watch(last: tasks_pb2.Task | None, exit_status: bool) -> None:
    """With --exit-status, exits with the code of the state the task ended in."""
    if not exit_status:
        return
    if last is None or last.state not in EXIT_CODES:
        raise CliError("the watch ended before the task did")
    if code := EXIT_CODES[last.state]:
        sys.stdout.flush()
        raise SystemExit(code)


def _watch(
    session: Session, task_id: str, fmt: str, *, subtasks: bool = False
) -> tasks_pb2.Task | None:
    """Prints the task's updates until it ends (a progress line, or one JSON/YAML document
    per update) and returns the last one seen. With `subtasks`, each subtask change is shown
    too; they come batched (many per message, latest state only)."""
    bar = output.ProgressLine()
    last: tasks_pb2.Task | None = None
    version = 0
    shown: dict[str, int] = {}
    # A dropped stream resumes from the last version seen, so nothing is missed.
    for _attempt in range(5):
        stream = _tasks(session).WatchTask(
            tasks_pb2.WatchTaskRequest(
                task_id=task_id,
                after_version=version,
                include_subtasks=subtasks,
                batch_subtasks=subtasks,
            ),
            metadata=session.metadata(),
        )
        for update in stream:
            for subtask in update.subtasks:
                if shown.get(subtask.id) != subtask.state:  # a resume may repeat some
                    shown[subtask.id] = subtask.state
                    _show_subtask(subtask, fmt)
            if not update.HasField("task"):
                continue  # a piece of a large batch; the task comes with its last piece
            last = update.task
            version = max(version, last.version)
            if fmt == "json":
                print(json.dumps(output.as_dict(update.task), sort_keys=True), flush=True)
            elif fmt == "yaml":
                print("---", flush=False)
                output.show("yaml", update.task, lambda: None)
                sys.stdout.flush()
            else:
                bar.update(
                    last.succeeded_count,
                    last.failed_count,
                    last.total_images,
                    state_label(last),
                    cancelled=last.cancelled_count,
                )
        if last is not None and last.state in TERMINAL:
            break
    bar.close()
    if last is not None and fmt == "table":
        print(f"task {last.id} {state_label(last)}")
    return last


SUBTASK_ENDINGS = {
    tasks_pb2.SUBTASK_STATE_SUCCEEDED: "succeeded",
    tasks_pb2.SUBTASK_STATE_FAILED: "failed",
    tasks_pb2.SUBTASK_STATE_CANCELLED: "cancelled",
}


def _show_subtask(subtask: tasks_pb2.Subtask, fmt: str) -> None:
    """One subtask change: every change as a document, or a line when it ended (table)."""
    if fmt == "json":
        print(json.dumps({"subtask": output.as_dict(subtask)}, sort_keys=True), flush=True)
    elif fmt == "yaml":
        print("---", flush=False)
        print(yaml.safe_dump({"subtask": output.as_dict(subtask)}, sort_keys=True), end="")
        sys.stdout.flush()
    elif subtask.state in SUBTASK_ENDINGS:
        error = f"  {subtask.error.type}: {subtask.error.message}" if subtask.error.type else ""
        print(f"subtask {subtask.index} {SUBTASK_ENDINGS[subtask.state]}{error}", flush=True)


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
    output.show(
        args.output_format,
        [output.as_dict(t) for t in found],
        lambda: output.print_table(TASK_HEADERS, [_task_row(t) for t in found]),
    )


def _show_answer(session: Session, args: argparse.Namespace, rpc: Any, request: Any) -> None:
    """Calls `rpc` (a TaskService stub method answering with a task) and shows the task."""
    _show_task(rpc(request, metadata=session.metadata(), timeout=30).task, args.output_format)


def get(session: Session, args: argparse.Namespace) -> None:
    """Shows one task."""
    request = tasks_pb2.GetTaskRequest(task_id=args.task_id)
    _show_answer(session, args, _tasks(session).GetTask, request)


def variable_filter(text: str) -> tasks_pb2.VariableFilter:
    """`style=anime` as a VariableFilter (argparse type of `--where`); the value may hold
    `=` and may be empty, the name may not."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected VARIABLE=VALUE, got {text!r}")
    return tasks_pb2.VariableFilter(name=name.strip(), value=value)


def _where(args: argparse.Namespace) -> list[tasks_pb2.VariableFilter]:
    return list(getattr(args, "where", None) or [])


def cancel(session: Session, args: argparse.Namespace) -> None:
    """Cancels a task, or with --where the waiting subtasks of that slice."""
    request = tasks_pb2.CancelTaskRequest(task_id=args.task_id, variable_filters=_where(args))
    _show_answer(session, args, _tasks(session).CancelTask, request)


def pause(session: Session, args: argparse.Namespace) -> None:
    """Holds a task's (or with --where a slice's) waiting subtasks; running ones finish."""
    request = tasks_pb2.PauseTaskRequest(task_id=args.task_id, variable_filters=_where(args))
    _show_answer(session, args, _tasks(session).PauseTask, request)


def resume(session: Session, args: argparse.Namespace) -> None:
    """Lets a paused task's (or with --where a slice's) subtasks be dispatched again."""
    request = tasks_pb2.ResumeTaskRequest(task_id=args.task_id, variable_filters=_where(args))
    _show_answer(session, args, _tasks(session).ResumeTask, request)


def priority(session: Session, args: argparse.Namespace) -> None:
    """Changes an unfinished task's priority (0..9; higher goes first)."""
    request = tasks_pb2.UpdateTaskRequest(
        task=tasks_pb2.Task(id=args.task_id, priority=args.priority),
        update_mask=field_mask_pb2.FieldMask(paths=["priority"]),
    )
    _show_answer(session, args, _tasks(session).UpdateTask, request)


def retry(session: Session, args: argparse.Namespace) -> None:
    """Re-queues a task's (or with --where a slice's) failed and cancelled subtasks."""
    response = _tasks(session).RetryTask(
        tasks_pb2.RetryTaskRequest(task_id=args.task_id, variable_filters=_where(args)),
        metadata=session.metadata(),
        timeout=30,
    )
    output.show(
        args.output_format,
        response,
        lambda: print(f"re-queued {response.retried_count} subtasks of task {args.task_id}"),
    )


def delete(session: Session, args: argparse.Namespace) -> None:
    """Soft-deletes a task."""
    _tasks(session).DeleteTask(
        tasks_pb2.DeleteTaskRequest(task_id=args.task_id), metadata=session.metadata(), timeout=30
    )
    print(f"deleted task {args.task_id}")


def _subtasks(
    session: Session,
    task_id: str,
    states: list[str],
    where: list[tasks_pb2.VariableFilter] | None = None,
) -> Iterator[tasks_pb2.Subtask]:
    token = ""
    while True:
        response = _tasks(session).ListSubtasks(
            tasks_pb2.ListSubtasksRequest(
                task_id=task_id,
                page_size=1000,
                page_token=token,
                states=states,
                variable_filters=where or [],
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
    states = [SUBTASK_STATES[s] for s in args.state or []]
    found = list(_subtasks(session, args.task_id, states, _where(args)))
    if args.output_format != "table":
        output.show(args.output_format, [output.as_dict(s) for s in found], lambda: None)
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
    output.show(
        args.output_format,
        metadata,
        lambda: print(f"saved {len(data)} bytes ({metadata.content_type}) to {args.output}"),
    )


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
    if args.output_format != "table":
        output.show(args.output_format, [output.as_dict(q) for q in stats.queues], lambda: None)
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
    if args.output_format != "table":
        output.show(args.output_format, [output.as_dict(w) for w in response.workers], lambda: None)
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


GRID_STATES = ("pending", "queued", "running", "succeeded", "failed", "cancelled", "held")


def _cell(counts: tasks_pb2.SubtaskCounts) -> str:
    """`done/total`, then failed (F), cancelled (C) and held (H) counts when there are any."""
    text = f"{counts.succeeded}/{counts.total}"
    for letter, count in (("F", counts.failed), ("C", counts.cancelled), ("H", counts.held)):
        if count:
            text += f" {count}{letter}"
    return text


def grid_tables(grid: tasks_pb2.TaskGrid) -> None:
    """The grid for people: with a table, rows x columns of `done/total` cells; without,
    one table per variable of its values by state."""
    if grid.HasField("table"):
        table = grid.table
        cells = {(c.row_value, c.column_value): c.counts for c in table.cells}
        output.print_table(
            [f"{table.row_variable} \\ {table.column_variable}", *table.column_values],
            [(r, *(_cell(cells[r, c]) for c in table.column_values)) for r in table.row_values],
        )
        print("cells: succeeded/total, then F failed, C cancelled, H held (paused slice)")
        return
    for index, variable in enumerate(grid.variables):
        if index:
            print()
        output.print_table(
            [variable.name.upper(), "TOTAL", *(s.upper() for s in GRID_STATES)],
            [
                (v.value, v.counts.total, *(getattr(v.counts, s) for s in GRID_STATES))
                for v in variable.values
            ],
        )


def _grid_request(args: argparse.Namespace) -> tasks_pb2.GetTaskGridRequest:
    if bool(args.rows) != bool(args.cols):
        raise CliError("--rows and --cols go together", 2)
    return tasks_pb2.GetTaskGridRequest(
        task_id=args.task_id, row_variable=args.rows or "", column_variable=args.cols or ""
    )


def grid(session: Session, args: argparse.Namespace) -> None:
    """A task's subtasks counted by variable value and state; live with --watch."""
    request = _grid_request(args)
    stub = _tasks(session)
    if not args.watch:
        found = stub.GetTaskGrid(request, metadata=session.metadata(), timeout=30).grid
        output.show(args.output_format, found, lambda: grid_tables(found))
        return
    tty = sys.stdout.isatty()
    shown = -1
    # The watch's own grid has no table; with --rows/--cols each newer version is read.
    stream = stub.WatchTask(
        tasks_pb2.WatchTaskRequest(task_id=args.task_id, include_grid=not request.row_variable),
        metadata=session.metadata(),
    )
    last: tasks_pb2.Task | None = None
    for update in stream:
        last = update.task
        if update.task.version <= shown:
            continue
        if update.HasField("grid"):
            found = update.grid
        else:
            found = stub.GetTaskGrid(request, metadata=session.metadata(), timeout=30).grid
        shown = max(found.version, update.task.version)
        if args.output_format == "json":
            print(json.dumps(output.as_dict(found), sort_keys=True), flush=True)
            continue
        if args.output_format == "yaml":
            print("---")
            output.show("yaml", found, lambda: None)
            sys.stdout.flush()
            continue
        if tty:
            sys.stdout.write("\033[H\033[J")  # redraw in place
        elif shown > 0:
            print()
        print(f"task {last.id} {state_label(last)}, version {found.version}")
        grid_tables(found)
        sys.stdout.flush()
