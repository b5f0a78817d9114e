"""Queue, image format and error type names: one list each, and the proto enums agree."""

from __future__ import annotations

import pytest

from kiln.common import bus, job_errors, vocabulary
from kiln.imagegen.v1 import imagegen_pb2, jobs_pb2
from kiln.tasks.v1 import tasks_pb2


def test_queue_names_and_enum_values_match_one_for_one() -> None:
    """Every Queue value but UNSPECIFIED is a bus queue and back, in the bus's priority order;
    UNSPECIFIED reads as the default queue."""
    assert tuple(vocabulary.QUEUE_ENUMS) == bus.QUEUES
    assert set(vocabulary.QUEUE_ENUMS.values()) == {v for v in tasks_pb2.Queue.values() if v}
    assert vocabulary.QUEUE_ENUMS["standard"] == tasks_pb2.QUEUE_STANDARD
    assert vocabulary.QUEUE_NAMES[tasks_pb2.QUEUE_UNSPECIFIED] == vocabulary.DEFAULT_QUEUE
    for name, value in vocabulary.QUEUE_ENUMS.items():
        assert vocabulary.QUEUE_NAMES[value] == name


@pytest.mark.parametrize(
    ("enums", "names", "enum_type", "unspecified"),
    [
        (
            vocabulary.OUTPUT_FORMAT_ENUMS,
            vocabulary.OUTPUT_FORMAT_NAMES,
            tasks_pb2.OutputFormat,
            tasks_pb2.OUTPUT_FORMAT_UNSPECIFIED,
        ),
        (
            vocabulary.IMAGE_FORMAT_ENUMS,
            vocabulary.IMAGE_FORMAT_NAMES,
            imagegen_pb2.ImageFormat,
            imagegen_pb2.IMAGE_FORMAT_UNSPECIFIED,
        ),
    ],
)
def test_both_format_enums_map_to_the_same_names(
    enums: dict[str, int], names: dict[int, str], enum_type: object, unspecified: int
) -> None:
    """The tasks API's OutputFormat and the jobs' ImageFormat name the same formats; each
    value maps to its name and back, and UNSPECIFIED is the default format."""
    assert tuple(enums) == vocabulary.IMAGE_FORMATS
    assert set(enums.values()) == {v for v in enum_type.values() if v}  # type: ignore[attr-defined]
    assert names[unspecified] == vocabulary.DEFAULT_IMAGE_FORMAT
    for name, value in enums.items():
        assert names[value] == name


def test_error_types_keep_their_stored_names() -> None:
    """The shared error vocabulary stores and sends the same strings as before the enum, so
    old rows and in-flight events still read; an unknown name parses as UNSPECIFIED."""
    assert job_errors.EXPIRED == "EXPIRED"
    assert job_errors.TIMEOUT == "TIMEOUT"
    assert job_errors.MAX_DELIVERIES == "MAX_DELIVERIES"
    assert job_errors.UNPUBLISHABLE == "UNPUBLISHABLE"
    assert job_errors.TIME_LIMIT == "TIME_LIMIT"
    assert job_errors.parse("EXPIRED") == jobs_pb2.JOB_ERROR_TYPE_EXPIRED
    assert job_errors.parse("SOMETHING_NEWER") == jobs_pb2.JOB_ERROR_TYPE_UNSPECIFIED
    assert len(job_errors.NAMES) == len(jobs_pb2.JobErrorType.values()) - 1
    for text in job_errors.NAMES:
        assert job_errors.name(job_errors.parse(text)) == text
    with pytest.raises(ValueError, match="UNSPECIFIED"):
        job_errors.name(jobs_pb2.JOB_ERROR_TYPE_UNSPECIFIED)
