"""Opaque page tokens for every List RPC: base64 of JSON holding the keyset position and a
filter fingerprint.

A token only works with the filters it was issued for; anything else (a forged, truncated or
foreign token) is INVALID_ARGUMENT, never a server error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from kiln.common import errors

MAX_PAGE_SIZE = 1000


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
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument.field("page_token", "is not a valid page token") from None
    if not isinstance(data, dict) or not isinstance(data.get("p"), dict):
        raise errors.InvalidArgument.field("page_token", "is not a valid page token")
    if data.get("f") != filters:
        raise errors.InvalidArgument.field("page_token", "belongs to a request with other filters")
    position: dict[str, Any] = data["p"]
    return position
