"""Checks of request fields, each reported as a field violation naming the field."""

from __future__ import annotations

import re
import uuid

from kiln.common import errors

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
# Deliberately plain: one @, no spaces, a dot in the domain. Deliverability is the mail
# server's business; this only refuses what cannot be an address.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


def normalise_email(email: str) -> str:
    """The stored form of an email: trimmed and lower-cased."""
    return email.strip().lower()


def email_violations(field: str, email: str) -> list[errors.FieldViolation]:
    """What is wrong with an (already normalised) email address."""
    if not email:
        return [errors.FieldViolation(field, "is required")]
    if len(email) > MAX_EMAIL_LENGTH:
        return [errors.FieldViolation(field, f"must be at most {MAX_EMAIL_LENGTH} characters")]
    if not email.isprintable() or not _EMAIL.fullmatch(email):
        return [errors.FieldViolation(field, "is not a valid email address")]
    return []


def name_violations(field: str, name: str) -> list[errors.FieldViolation]:
    """What is wrong with a display name or key name (already trimmed)."""
    if not name:
        return [errors.FieldViolation(field, "is required")]
    if len(name) > MAX_NAME_LENGTH:
        return [errors.FieldViolation(field, f"must be at most {MAX_NAME_LENGTH} characters")]
    if not name.isprintable():
        return [errors.FieldViolation(field, "must not contain control characters")]
    return []


def search_violations(field: str, text: str) -> list[errors.FieldViolation]:
    """What is wrong with search text (already trimmed)."""
    if len(text) > MAX_EMAIL_LENGTH:
        return [errors.FieldViolation(field, f"must be at most {MAX_EMAIL_LENGTH} characters")]
    if not text.isprintable():
        return [errors.FieldViolation(field, "must not contain control characters")]
    return []


def parse_id(field: str, value: str) -> uuid.UUID:
    """A UUID from a request field; INVALID_ARGUMENT naming the field otherwise."""
    if not value:
        raise errors.InvalidArgument.field(field, "is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise errors.InvalidArgument.field(field, "must be a UUID") from None


def raise_if(violations: list[errors.FieldViolation]) -> None:
    """Raises INVALID_ARGUMENT listing every violation, if there are any."""
    if violations:
        raise errors.InvalidArgument(violations)
