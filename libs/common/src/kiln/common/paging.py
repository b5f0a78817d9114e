"""Opaque page tokens for every List RPC: base64 of JSON holding the keyset position and a
filter fingerprint.

A token only works with the filters it was issued for; anything else (a forged, truncated or
foreign token) is INVALID_ARGUMENT, never a server error.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import json
from typing import Any

from kiln.common import errors

MAX_PAGE_SIZE = 1000
MAX_TOKEN_LENGTH = 1024
"""Our tokens are about 150 characters; anything far longer is not one of ours, and is
refused before it is decoded (a deeply nested JSON made the decoder recurse to its limit)."""
_MAX_POSITION_INT = 2**63 - 1
_INVALID = "is not a valid page token"


def page_size(requested: int, default: int) -> int:
    """The page size to use: 0 means the default, more than the maximum is capped."""
    if requested < 0:
        raise errors.InvalidArgument.field("page_size", "must not be negative")
    return min(requested or default, MAX_PAGE_SIZE)


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
        raise errors.InvalidArgument.field("page_token", "belongs to a request with other filters")
    position: dict[str, Any] = data["p"]
    return position


def invalid_token() -> errors.InvalidArgument:
    """The error for a page token that is not one of ours."""
    return errors.InvalidArgument.field("page_token", _INVALID)


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
