"""Reading the rich error status (`google.rpc.Status`) a failed call carries in its trailers."""

from __future__ import annotations

from collections.abc import Iterable

from google.rpc import error_details_pb2, status_pb2

from kiln.common.interceptors import STATUS_DETAILS_KEY


def violated_fields(trailers: Iterable[tuple[str, str | bytes]]) -> list[str]:
    """The fields named by the BadRequest detail of the status in `trailers`; fails the test
    when the trailers carry no status."""
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            fields: list[str] = []
            for detail in status.details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    fields += [v.field for v in bad.field_violations]
            return fields
    raise AssertionError(f"no status details in the trailers {list(trailers)!r}")
