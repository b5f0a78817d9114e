"""Paging of every List RPC: the page-size rule, the keyset cursor and the opaque page tokens.

Page sizes follow AIP-158: 0 means the list's default, more than MAX_PAGE_SIZE is coerced
to it, and only a negative size is INVALID_ARGUMENT naming page_size.

A token is base64 of JSON holding the keyset position and a filter fingerprint. It only
works with the filters it was issued for; anything else (a forged, truncated or foreign
token) is INVALID_ARGUMENT, never a server error.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from kiln.common import errors

MAX_PAGE_SIZE = 1000
MAX_TOKEN_LENGTH = 1024
"""Our tokens are about 150 characters; anything far longer is not one of ours, and is
refused before it is decoded (a deeply nested JSON made the decoder recurse to its limit)."""
_MAX_POSITION_INT = 2**63 - 1
_INVALID = "is not a valid page token"
INVALID_PAGE_TOKEN = "INVALID_PAGE_TOKEN"  # noqa: S105 - an ErrorInfo reason, not a secret

T = TypeVar("T")


def page_size(requested: int, default: int) -> int:
    """The page size to use (AIP-158): 0 means `default`, more than MAX_PAGE_SIZE is
    coerced to it; a negative size is INVALID_ARGUMENT naming page_size."""
    if requested < 0:
        raise errors.InvalidArgument.field("page_size", "must not be negative")
    return min(requested or default, MAX_PAGE_SIZE)


@dataclasses.dataclass(frozen=True)
class Cursor:
    """The (create_time, id) of the last item of the previous page: the keyset position of
    every newest-first list."""

    create_time: datetime.datetime
    id: uuid.UUID

    def position(self) -> dict[str, Any]:
        """The position to encode in the next page's token."""
        return {"t": self.create_time.isoformat(), "i": str(self.id)}

    @classmethod
    def after(cls, token: str, filters: str) -> Cursor | None:
        """The cursor in `token` (None for the first page); INVALID_ARGUMENT on page_token
        if it is not one of ours or belongs to other filters."""
        position = decode(token, filters)
        if position is None:
            return None
        try:
            row_id = uuid.UUID(text_at(position, "i"))
        except ValueError:
            raise invalid_token() from None
        return cls(time_at(position, "t"), row_id)


class Keyed(Protocol):
    """An item of a newest-first list: it has a creation time and a UUID."""

    @property
    def create_time(self) -> datetime.datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


def keyset_position(item: Keyed) -> dict[str, Any]:
    """The token position that resumes a newest-first list after `item`."""
    return Cursor(item.create_time, item.id).position()


def cut(
    found: Sequence[T],
    size: int,
    filters: str,
    position_of: Callable[[T], dict[str, Any]],
    *,
    fit: Callable[[list[T]], list[T]] | None = None,
) -> tuple[list[T], str]:
    """The page and the next page's token ("" on the last page) from `found`, which was
    fetched with a limit of `size + 1`: the extra row only says that there is more.

    `fit` may shorten the page further (to keep a response under the message limit); the
    token then resumes after the last item kept."""
    page = list(found[:size])
    if fit is not None:
        page = fit(page)
    if not page or len(found) <= len(page):
        return page, ""
    return page, encode(position_of(page[-1]), filters)


def fingerprint(*parts: Any) -> str:
    """A short digest of the filters a token belongs to."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def encode(position: dict[str, Any], filters: str) -> str:
    """The token for the page after `position`."""
    raw = json.dumps({"p": position, "f": filters}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, filters: str) -> dict[str, Any] | None:
    """The position in `token` (None for an empty token); INVALID_ARGUMENT when the token is
    malformed or was issued for other filters."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise invalid_token() from None
    if not isinstance(data, dict) or not isinstance(data.get("p"), dict):
        raise invalid_token()
    if data.get("f") != filters:
        raise errors.InvalidArgument.field(
            "page_token", "belongs to a request with other filters", reason=INVALID_PAGE_TOKEN
        )
    position: dict[str, Any] = data["p"]
    return position


def invalid_token() -> errors.InvalidArgument:
    """The error for a page token that is not one of ours."""
    return errors.InvalidArgument.field("page_token", _INVALID, reason=INVALID_PAGE_TOKEN)


def text_at(position: dict[str, Any], key: str) -> str:
    """The text stored under `key` in a decoded position; INVALID_ARGUMENT if it is missing
    or of another type (a forged `"i": true` must not reach a query)."""
    value = position.get(key)
    if not isinstance(value, str):
        raise invalid_token()
    return value


def int_at(position: dict[str, Any], key: str) -> int:
    """The integer under `key` (a bool is not one), within a signed 64-bit range."""
    value = position.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_token()
    if not -_MAX_POSITION_INT <= value <= _MAX_POSITION_INT:
        raise invalid_token()
    return value


def time_at(position: dict[str, Any], key: str) -> datetime.datetime:
    """The timezone-aware time stored in ISO format under `key`."""
    try:
        value = datetime.datetime.fromisoformat(text_at(position, key))
    except ValueError:
        raise invalid_token() from None
    if value.tzinfo is None:
        raise invalid_token()
    return value
