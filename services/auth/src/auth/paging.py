"""Page tokens of the auth service's lists: keyset paging on (create_time, id), newest first.

The token format is kiln.common.paging's (a position plus a fingerprint of the query, so a
token cannot be replayed against another search); this module adds auth's cursor and its
page-size rule (out of range is refused, as the contract says 1..1000).
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid

from kiln.common import errors
from kiln.common import paging as tokens

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = tokens.MAX_PAGE_SIZE


@dataclasses.dataclass(frozen=True)
class Cursor:
    """The (create_time, id) of the last item of the previous page."""

    create_time: datetime.datetime
    id: uuid.UUID


def page_size(requested: int) -> int:
    """The page size to use; INVALID_ARGUMENT naming page_size when out of range."""
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise errors.InvalidArgument.field("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    return requested


def encode(cursor: Cursor, query: str) -> str:
    """The token that resumes after `cursor` for the same `query`."""
    position = {"t": cursor.create_time.isoformat(), "i": str(cursor.id)}
    return tokens.encode(position, tokens.fingerprint(query))


def decode(token: str, query: str) -> Cursor | None:
    """The cursor in `token` (None for the first page); INVALID_ARGUMENT if it is not one
    of ours or belongs to another query."""
    position = tokens.decode(token, tokens.fingerprint(query))
    if position is None:
        return None
    try:
        row_id = uuid.UUID(tokens.text_at(position, "i"))
    except ValueError:
        raise tokens.invalid_token() from None
    return Cursor(tokens.time_at(position, "t"), row_id)
