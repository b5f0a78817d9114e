"""Python datetimes as protobuf `Timestamp`s, for every service's responses and messages."""

from __future__ import annotations

import datetime
from typing import overload

from google.protobuf import timestamp_pb2


@overload
def timestamp(moment: datetime.datetime) -> timestamp_pb2.Timestamp: ...
@overload
def timestamp(moment: None) -> None: ...
@overload
def timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp | None: ...
def timestamp(moment: datetime.datetime | None) -> timestamp_pb2.Timestamp | None:
    """`moment` as a Timestamp; None (an unset message field) for None. A naive datetime is
    taken as UTC, as the database and the services hold them."""
    if moment is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def now() -> timestamp_pb2.Timestamp:
    """The current time as a Timestamp."""
    return timestamp(datetime.datetime.now(datetime.UTC))
