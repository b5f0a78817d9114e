"""Opaque, stable page tokens for keyset paging on (create_time, id), newest first.

A token is the position of the last item returned plus a fingerprint of the query it
belongs to, so a token cannot be replayed against another search. Positions do not shift
when rows are added, so pages neither skip nor repeat items.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
import uuid

from kiln.common import errors

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


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


def _fingerprint(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()[:16]


def encode(cursor: Cursor, query: str) -> str:
    """The token that resumes after `cursor` for the same `query`."""
    body = {"t": cursor.create_time.isoformat(), "i": str(cursor.id), "q": _fingerprint(query)}
    return base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")


def decode(token: str, query: str) -> Cursor | None:
    """The cursor in `token` (None for the first page); INVALID_ARGUMENT if it is not one
    of ours or belongs to another query."""
    if not token:
        return None
    invalid = errors.InvalidArgument.field("page_token", "is not a token from a previous call")
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor = Cursor(datetime.datetime.fromisoformat(body["t"]), uuid.UUID(body["i"]))
        same_query = body["q"] == _fingerprint(query)
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if cursor.create_time.tzinfo is None:
        raise invalid
    if not same_query:
        raise errors.InvalidArgument.field(
            "page_token", "belongs to a different query; start again without it"
        )
    return cursor
