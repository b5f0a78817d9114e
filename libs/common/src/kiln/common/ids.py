"""Resource ids from requests: one rule in every service.

A malformed id is the caller's mistake, INVALID_ARGUMENT naming the field; a well-formed id
that names nothing (or something the caller may not see) is NOT_FOUND, decided by the
caller of `parse_id` after the lookup.
"""

from __future__ import annotations

import uuid

from kiln.common import errors


def parse_id(field: str, value: str) -> uuid.UUID:
    """The UUID in request field `field`; INVALID_ARGUMENT naming the field when it is
    empty or not a UUID."""
    if not value:
        raise errors.InvalidArgument.field(field, "is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.InvalidArgument.field(field, "must be a UUID") from None
