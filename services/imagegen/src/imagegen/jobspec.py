"""What a job asks for: decoding it from the wire, and the names derived from it."""

from __future__ import annotations

import dataclasses
import datetime

from google.protobuf import message

from imagegen import imaging
from kiln.imagegen.v1 import jobs_pb2

MAX_SIDE = 8192


class MalformedJob(Exception):
    """The job's bytes are not a usable Job; ids are set when they could be read."""

    def __init__(self, reason: str, job: jobs_pb2.Job | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.job = job if job is not None and job.task_id and job.subtask_id else None


def decode(data: bytes) -> jobs_pb2.Job:
    """The Job in `data`; MalformedJob when it cannot be decoded or misses what we need."""
    job = jobs_pb2.Job()
    try:
        job.ParseFromString(data)
    except message.DecodeError:
        raise MalformedJob("the job is not a decodable kiln.imagegen.v1.Job") from None
    problems = []
    if not job.task_id or not job.subtask_id:
        problems.append("task_id and subtask_id are required")
    if not 0 < job.width <= MAX_SIDE or not 0 < job.height <= MAX_SIDE:
        problems.append(f"width and height must be 1..{MAX_SIDE}")
    if imaging.format_of(job.format) is None:
        problems.append("unknown image format")
    if not job.prompt.strip():
        problems.append("the prompt is empty")
    if problems:
        raise MalformedJob("; ".join(problems), job)
    return job


def image_format(job: jobs_pb2.Job) -> imaging.ImageFormat:
    """The encoding the job asks for; MalformedJob for an unknown one (`decode` checks)."""
    found = imaging.format_of(job.format)
    if found is None:
        raise MalformedJob("unknown image format", job)
    return found


def object_name(job: jobs_pb2.Job) -> str:
    """Where the image goes: fixed per subtask, so a retry overwrites instead of duplicating."""
    return f"tasks/{job.task_id}/{job.subtask_id}.{image_format(job).value}"


def thumbnail_name(job: jobs_pb2.Job) -> str:
    """Where the thumbnail goes."""
    return f"tasks/{job.task_id}/{job.subtask_id}.thumb.webp"


def age_seconds(job: jobs_pb2.Job, now: datetime.datetime) -> float | None:
    """How old the subtask is, or None when the job carries no creation time."""
    if not job.HasField("create_time"):
        return None
    created = job.create_time.ToDatetime(tzinfo=datetime.UTC)
    return (now - created).total_seconds()


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One delivery of a job: which attempt (tasks side) and which delivery (JetStream)."""

    job: jobs_pb2.Job
    delivery: int
    max_deliver: int

    @property
    def is_last(self) -> bool:
        """No redelivery follows this one."""
        return self.delivery >= self.max_deliver
