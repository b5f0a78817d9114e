"""The names of queues and image formats, and the proto enum values that stand for them.

A queue or format has one name everywhere inside Kiln (`standard`, `webp`): in task
settings, database rows, NATS subjects, jobs and config. The public APIs spell them as enum
values (`QUEUE_STANDARD`, `OUTPUT_FORMAT_WEBP`, `IMAGE_FORMAT_WEBP`); the tables here are made
from the names by that spelling rule, so a new queue or format is added to the tuple below
and to the protos, and a test checks the two agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from kiln.common.bus import QUEUES
from kiln.imagegen.v1 import imagegen_pb2
from kiln.tasks.v1 import tasks_pb2

__all__ = [
    "DEFAULT_IMAGE_FORMAT",
    "DEFAULT_QUEUE",
    "IMAGE_FORMATS",
    "IMAGE_FORMAT_ENUMS",
    "IMAGE_FORMAT_NAMES",
    "OUTPUT_FORMAT_ENUMS",
    "OUTPUT_FORMAT_NAMES",
    "QUEUES",
    "QUEUE_ENUMS",
    "QUEUE_NAMES",
]

DEFAULT_QUEUE = "standard"
"""The queue of a task or Generate call that names none."""

IMAGE_FORMATS: tuple[str, ...] = ("png", "webp", "jpeg")
"""Every encoding of a stored image; the name is also its file extension."""
DEFAULT_IMAGE_FORMAT = "png"


E = TypeVar("E")


def _by_name(names: tuple[str, ...], prefix: str, enum: type[E]) -> dict[str, E]:
    # The generated stubs type an enum's lookups as int; the values are the enum's.
    values: Mapping[str, Any] = dict(cast(Any, enum).items())
    return {name: values[prefix + name.upper()] for name in names}


QUEUE_ENUMS: dict[str, tasks_pb2.Queue] = _by_name(QUEUES, "QUEUE_", tasks_pb2.Queue)
"""Queue name -> `kiln.tasks.v1.Queue` value, in the workers' priority order."""
QUEUE_NAMES: dict[int, str] = {
    tasks_pb2.QUEUE_UNSPECIFIED: DEFAULT_QUEUE,
    **{value: name for name, value in QUEUE_ENUMS.items()},
}
"""`kiln.tasks.v1.Queue` value -> queue name; UNSPECIFIED is the default queue."""

OUTPUT_FORMAT_ENUMS: dict[str, tasks_pb2.OutputFormat] = _by_name(
    IMAGE_FORMATS, "OUTPUT_FORMAT_", tasks_pb2.OutputFormat
)
"""Format name -> `kiln.tasks.v1.OutputFormat` value."""
OUTPUT_FORMAT_NAMES: dict[int, str] = {
    tasks_pb2.OUTPUT_FORMAT_UNSPECIFIED: DEFAULT_IMAGE_FORMAT,
    **{value: name for name, value in OUTPUT_FORMAT_ENUMS.items()},
}
"""`kiln.tasks.v1.OutputFormat` value -> format name; UNSPECIFIED is the default."""

IMAGE_FORMAT_ENUMS: dict[str, imagegen_pb2.ImageFormat] = _by_name(
    IMAGE_FORMATS, "IMAGE_FORMAT_", imagegen_pb2.ImageFormat
)
"""Format name -> `kiln.imagegen.v1.ImageFormat` value (jobs and Generate)."""
IMAGE_FORMAT_NAMES: dict[int, str] = {
    imagegen_pb2.IMAGE_FORMAT_UNSPECIFIED: DEFAULT_IMAGE_FORMAT,
    **{value: name for name, value in IMAGE_FORMAT_ENUMS.items()},
}
"""`kiln.imagegen.v1.ImageFormat` value -> format name; UNSPECIFIED is the default."""
