"""Why a subtask failed: the names of `kiln.imagegen.v1.JobErrorType`, shared by the tasks
service and the workers.

The enum in jobs.proto is the one list. On the wire (`JobError.type`), in the database and in
the public API the type travels as the enum's name without its `JOB_ERROR_TYPE_` prefix, as
it always has, so old rows and events sent by an older worker still read. Each constant here
is made from its enum value, so a name that is not in the proto fails at import.
"""

from __future__ import annotations

from typing import Final

from kiln.imagegen.v1 import jobs_pb2

_PREFIX = "JOB_ERROR_TYPE_"
JobErrorType = jobs_pb2.JobErrorType


def name(kind: int) -> str:
    """The stored and sent form of `kind`, e.g. "EXPIRED"."""
    if kind == jobs_pb2.JOB_ERROR_TYPE_UNSPECIFIED:
        raise ValueError("JOB_ERROR_TYPE_UNSPECIFIED has no name; it is never sent")
    return JobErrorType.Name(kind).removeprefix(_PREFIX)


def parse(text: str) -> int:
    """The enum value of a stored or received name; UNSPECIFIED for a name this code does
    not know (a newer worker's), which callers keep and show as it is."""
    try:
        return JobErrorType.Value(_PREFIX + text)
    except ValueError:
        return jobs_pb2.JOB_ERROR_TYPE_UNSPECIFIED


NAMES: Final = tuple(
    name(v) for v in JobErrorType.values() if v != jobs_pb2.JOB_ERROR_TYPE_UNSPECIFIED
)
"""Every known name, in the order of the proto."""

RENDER_FAILED: Final = name(jobs_pb2.JOB_ERROR_TYPE_RENDER_FAILED)
PROVIDER_TIMEOUT: Final = name(jobs_pb2.JOB_ERROR_TYPE_PROVIDER_TIMEOUT)
PROVIDER_UNAVAILABLE: Final = name(jobs_pb2.JOB_ERROR_TYPE_PROVIDER_UNAVAILABLE)
RATE_LIMITED: Final = name(jobs_pb2.JOB_ERROR_TYPE_RATE_LIMITED)
INVALID_PROMPT: Final = name(jobs_pb2.JOB_ERROR_TYPE_INVALID_PROMPT)
UNSUPPORTED_SIZE: Final = name(jobs_pb2.JOB_ERROR_TYPE_UNSUPPORTED_SIZE)
PROVIDER_REJECTED: Final = name(jobs_pb2.JOB_ERROR_TYPE_PROVIDER_REJECTED)
TIME_LIMIT: Final = name(jobs_pb2.JOB_ERROR_TYPE_TIME_LIMIT)
EXPIRED: Final = name(jobs_pb2.JOB_ERROR_TYPE_EXPIRED)
MALFORMED_JOB: Final = name(jobs_pb2.JOB_ERROR_TYPE_MALFORMED_JOB)
STORAGE_UNAVAILABLE: Final = name(jobs_pb2.JOB_ERROR_TYPE_STORAGE_UNAVAILABLE)
WORKER_ERROR: Final = name(jobs_pb2.JOB_ERROR_TYPE_WORKER_ERROR)
CANCELLED: Final = name(jobs_pb2.JOB_ERROR_TYPE_CANCELLED)
TIMEOUT: Final = name(jobs_pb2.JOB_ERROR_TYPE_TIMEOUT)
MAX_DELIVERIES: Final = name(jobs_pb2.JOB_ERROR_TYPE_MAX_DELIVERIES)
UNPUBLISHABLE: Final = name(jobs_pb2.JOB_ERROR_TYPE_UNPUBLISHABLE)
FAILED: Final = name(jobs_pb2.JOB_ERROR_TYPE_FAILED)
