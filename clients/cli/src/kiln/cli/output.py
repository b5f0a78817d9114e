"""Printing: JSON for scripts, short tables and a live progress line for people."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import yaml
from google.protobuf import json_format
from google.protobuf.message import Message


def as_dict(message: Message) -> dict[str, Any]:
    """A message as plain JSON data with proto field names.

    Every field is present, unset ones (timestamps, durations) as null, so a resource has
    one set of keys whatever its state and a script can rely on them.
    """
    result: dict[str, Any] = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for field in message.DESCRIPTOR.fields:
        result.setdefault(field.name, None)
    return result


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    if isinstance(data, Message):
        data = as_dict(data)
    print(json.dumps(data, indent=2, sort_keys=True))


FORMATS = ("table", "json", "yaml")


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """`-o json|yaml|table` and its alias `--json`, kept for existing scripts."""
    parser.add_argument(
        "-o",
        "--output",
        dest="output_format",
        choices=FORMATS,
        default="table",
        help="output format (default: table); json and yaml print the resource's one shape",
    )
    parser.add_argument(
        "--json",
        dest="output_format",
        action="store_const",
        const="json",
        help="same as -o json",
    )


def show(fmt: str, data: Any, table: Callable[[], None]) -> None:
    """Prints `data` (a message, or a list of plain dicts) as JSON or YAML, or calls `table`.

    JSON and YAML carry the same document: proto field names, every field present.
    """
    if isinstance(data, Message):
        data = as_dict(data)
    if fmt == "json":
        print_json(data)
    elif fmt == "yaml":
        print(yaml.safe_dump(data, sort_keys=True, allow_unicode=True), end="")
    else:
        table()


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A left-aligned table with a header row."""
    materialised = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in materialised:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [list(headers), *materialised]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def enum_name(value: str) -> str:
    """`TASK_STATE_RUNNING` -> `running`."""
    for prefix in ("TASK_STATE_", "SUBTASK_STATE_", "QUEUE_", "OUTPUT_FORMAT_", "ROLE_"):
        if value.startswith(prefix):
            return value[len(prefix) :].lower()
    return value.lower()


class ProgressLine:
    """`[#####.....] 50/100 done, 2 failed  12.5/s  ETA 4s` redrawn in place on a TTY."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.first_done: tuple[float, int] | None = None
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last_text = ""

    def update(self, done: int, failed: int, total: int, state: str, cancelled: int = 0) -> None:
        """Redraws the line for the new counts; cancelled subtasks are named but do not
        fill the bar, so a cancelled task shows how far it really got."""
        now = time.monotonic()
        finished = done + failed
        if self.first_done is None and finished:
            self.first_done = (now, finished)
        rate = 0.0
        if self.first_done is not None and now > self.first_done[0]:
            rate = (finished - self.first_done[1]) / (now - self.first_done[0])
        eta = f"ETA {max(0, total - finished - cancelled) / rate:.0f}s" if rate > 0 else "ETA --"
        width = 30
        filled = int(width * finished / total) if total else width
        bar = "#" * filled + "." * (width - filled)
        skipped = f", {cancelled} cancelled" if cancelled else ""
        counts = f"{done}/{total} done, {failed} failed{skipped}"
        text = f"[{bar}] {counts}  {rate:.1f}/s  {eta}  {state}"
        if text == self.last_text:
            return
        self.last_text = text
        if self.tty:
            self.stream.write("\r" + text + "\033[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the line."""
        if self.tty and self.last_text:
            self.stream.write("\n")
            self.stream.flush()
