"""Caller input echoed in errors stays small, and page tokens that are not ours are
INVALID_ARGUMENT (never a crash of the decoder or a wrong-typed value reaching a query)."""

from __future__ import annotations

import base64
import datetime
import json
import uuid
from typing import Any

import pytest

from kiln.common import errors, paging

FILTERS = paging.fingerprint("f")


def _token(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_echo_cuts_a_long_value_and_says_how_long_it_was() -> None:
    """A 20 KB value is quoted by its first characters and its length, not whole."""
    echoed = errors.echo("r" * 20_000)
    assert len(echoed) < 100 and "20000 characters" in echoed
    assert errors.echo("16:9") == "'16:9'"


def test_status_of_many_huge_violations_fits_the_trailers() -> None:
    """However many and however long the violations (non-ASCII too), the message stays
    within 512 bytes and the packed status within 3 KiB, so the client's 8 KiB trailer
    limit never turns INVALID_ARGUMENT into RESOURCE_EXHAUSTED; what is cut is counted."""
    error = errors.InvalidArgument(
        [
            errors.FieldViolation(f'variables["{"é" * 20_000}{i}"]', "x" * 20_000)
            for i in range(5000)
        ]
    )
    status = errors.to_status_proto(error, request_id="r" * 128)
    assert len(status.message.encode()) <= errors.MAX_ERROR_MESSAGE_BYTES
    assert status.ByteSize() <= errors.MAX_DETAILS_BYTES
    assert "more violations not shown" in str(status.details)


def test_error_metadata_values_are_cut() -> None:
    """ErrorInfo metadata built from a caller's value is cut like every other echo."""
    error = errors.FailedPrecondition("no", metadata={"queue": "q" * 20_000})
    assert len(error.metadata["queue"].encode()) <= errors.MAX_FIELD_BYTES


def _nested(depth: int) -> bytes:
    return b'{"p":' + b"[" * depth + b"]" * depth + b"}"


@pytest.mark.parametrize(
    "token",
    [
        _token(_nested(100_000)),  # recursed to the interpreter's limit
        "A" * (paging.MAX_TOKEN_LENGTH + 1),
        _token({"p": [], "f": FILTERS}),
    ],
    ids=["deeply-nested", "too-long", "position-not-an-object"],
)
def test_malformed_tokens_are_invalid_argument(token: str) -> None:
    """Tokens that are not ours are INVALID_ARGUMENT on page_token."""
    with pytest.raises(errors.InvalidArgument) as caught:
        paging.decode(token, FILTERS)
    assert [v.field for v in caught.value.violations] == ["page_token"]


@pytest.mark.parametrize("value", [True, None, 1.5, "7", 2**64, [1], {"a": 1}])
def test_int_at_refuses_every_other_type(value: Any) -> None:
    """`"i": true` (a bool is an int in Python), floats, text and out-of-range numbers are
    not a page position."""
    position = paging.decode(_token({"p": {"i": value}, "f": FILTERS}), FILTERS)
    assert position is not None
    with pytest.raises(errors.InvalidArgument):
        paging.int_at(position, "i")


@pytest.mark.parametrize("value", [True, 3, None, "yesterday", "2026-01-01T00:00:00"])
def test_time_at_needs_an_aware_iso_time(value: Any) -> None:
    """Only a timezone-aware ISO time is a time position."""
    position = paging.decode(_token({"p": {"t": value}, "f": FILTERS}), FILTERS)
    assert position is not None
    with pytest.raises(errors.InvalidArgument):
        paging.time_at(position, "t")


def test_positions_of_the_right_type_are_read() -> None:
    """What `encode` writes, the accessors read back."""
    token = paging.encode({"i": 41, "t": "2026-01-01T00:00:00+00:00", "s": "x"}, FILTERS)
    position = paging.decode(token, FILTERS)
    assert position is not None
    assert paging.int_at(position, "i") == 41
    assert paging.time_at(position, "t").year == 2026
    assert paging.text_at(position, "s") == "x"


@pytest.mark.parametrize(("requested", "expected"), [(0, 50), (1, 1), (1000, 1000), (1001, 1000)])
def test_page_size_is_coerced_as_aip_158_says(requested: int, expected: int) -> None:
    """0 is the list's default and more than 1000 is coerced to 1000, not refused."""
    assert paging.page_size(requested, 50) == expected


def test_negative_page_size_is_invalid_argument_naming_page_size() -> None:
    """Only a negative size is the caller's mistake."""
    with pytest.raises(errors.InvalidArgument) as raised:
        paging.page_size(-1, 50)
    assert [v.field for v in raised.value.violations] == ["page_size"]


def test_cursor_round_trips_through_its_token() -> None:
    """The cursor a page ends with is the cursor the next request resumes after."""
    cursor = paging.Cursor(
        datetime.datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=datetime.UTC), uuid.uuid4()
    )
    token = paging.encode(cursor.position(), FILTERS)
    assert paging.Cursor.after(token, FILTERS) == cursor
    assert paging.Cursor.after("", FILTERS) is None
    forged = paging.encode({"t": cursor.create_time.isoformat(), "i": "not-a-uuid"}, FILTERS)
    with pytest.raises(errors.InvalidArgument):
        paging.Cursor.after(forged, FILTERS)


def test_cut_keeps_the_page_and_resumes_after_its_last_item() -> None:
    """Fetched with size + 1, the extra row only says there is more; the last page has no
    token; a `fit` that shortens the page moves the token back to the last item kept."""
    found = list(range(4))
    page, token = paging.cut(found, 3, FILTERS, lambda i: {"i": i})
    assert page == [0, 1, 2] and paging.decode(token, FILTERS) == {"i": 2}
    assert paging.cut(found, 4, FILTERS, lambda i: {"i": i}) == (found, "")
    page, token = paging.cut(found, 3, FILTERS, lambda i: {"i": i}, fit=lambda p: p[:1])
    assert page == [0] and paging.decode(token, FILTERS) == {"i": 0}
    assert paging.cut([], 3, FILTERS, lambda i: {"i": i}) == ([], "")


def test_reasons_name_the_logical_error_not_the_status_code() -> None:
    """Two errors with one status code carry different ErrorInfo reasons: a raise site's
    reason wins over the class default, and NOT_FOUND names its resource."""
    running = errors.FailedPrecondition("still running", reason="TASK_STILL_RUNNING")
    nothing = errors.FailedPrecondition("nothing to retry", reason="NOTHING_TO_RETRY")
    assert running.code == nothing.code
    assert running.details()[0].reason == "TASK_STILL_RUNNING"
    assert nothing.details()[0].reason == "NOTHING_TO_RETRY"
    assert errors.NotFound("api key", "k").reason == "API_KEY_NOT_FOUND"
    assert errors.FailedPrecondition("x").reason == "FAILED_PRECONDITION"  # the fallback
    assert paging.invalid_token().reason == "INVALID_PAGE_TOKEN"
