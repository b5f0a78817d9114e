"""Generate's request checks as a function: the queue by name or by the tasks API's enum."""

from __future__ import annotations

import pytest

from imagegen import generation, imaging
from kiln.common import errors
from kiln.imagegen.v1 import imagegen_pb2
from kiln.tasks.v1 import tasks_pb2

SERVED = ("high_priority", "standard")


def _fields(caught: pytest.ExceptionInfo[errors.InvalidArgument]) -> set[str]:
    return {v.field for v in caught.value.violations}


def test_queue_by_name_still_works_and_empty_means_the_first_served() -> None:
    """The string form is unchanged: a name picks the queue, none picks the first served."""
    named = generation.validate(imagegen_pb2.GenerateRequest(prompt="a", queue="standard"), SERVED)
    unnamed = generation.validate(imagegen_pb2.GenerateRequest(prompt="a"), SERVED)
    assert (named.queue, unnamed.queue) == ("standard", "high_priority")


def test_queue_by_enum_names_the_same_queue() -> None:
    """queue_value=QUEUE_STANDARD, as TaskService takes it, picks the `standard` queue, alone
    or with a matching name."""
    alone = imagegen_pb2.GenerateRequest(prompt="a", queue_value=tasks_pb2.QUEUE_STANDARD)
    both = imagegen_pb2.GenerateRequest(
        prompt="a", queue="standard", queue_value=tasks_pb2.QUEUE_STANDARD
    )
    assert generation.validate(alone, SERVED).queue == "standard"
    assert generation.validate(both, SERVED).queue == "standard"


def test_conflicting_or_unknown_enum_is_refused_naming_queue_value() -> None:
    """A queue_value naming another queue than `queue`, an unknown number, or a queue this
    worker does not serve is INVALID_ARGUMENT on queue_value."""
    requests = [
        imagegen_pb2.GenerateRequest(
            prompt="a", queue="standard", queue_value=tasks_pb2.QUEUE_LUMINA
        ),
        imagegen_pb2.GenerateRequest(prompt="a", queue_value=99),  # type: ignore[arg-type]
        imagegen_pb2.GenerateRequest(prompt="a", queue_value=tasks_pb2.QUEUE_LUMINA),
    ]
    for request in requests:
        with pytest.raises(errors.InvalidArgument) as caught:
            generation.validate(request, SERVED)
        assert _fields(caught) == {"queue_value"}


def test_image_format_comes_from_the_shared_table() -> None:
    """UNSPECIFIED is PNG, each ImageFormat its format, an unknown number is refused."""

    def fmt(value: int) -> imaging.ImageFormat:
        request = imagegen_pb2.GenerateRequest(prompt="a", format=value)  # type: ignore[arg-type]
        return generation.validate(request, SERVED).image_format

    assert fmt(imagegen_pb2.IMAGE_FORMAT_UNSPECIFIED) == imaging.ImageFormat.PNG
    assert fmt(imagegen_pb2.IMAGE_FORMAT_WEBP) == imaging.ImageFormat.WEBP
    assert fmt(imagegen_pb2.IMAGE_FORMAT_JPEG) == imaging.ImageFormat.JPEG
    with pytest.raises(errors.InvalidArgument) as caught:
        fmt(42)
    assert _fields(caught) == {"format"}
