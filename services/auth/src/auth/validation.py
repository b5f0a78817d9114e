"""Checks of request fields, each reported as a field violation naming the field."""

from __future__ import annotations

import re

from auth import passwords
from kiln.common import errors, paging, textlimits

MAX_EMAIL_LENGTH = 254
MAX_NAME_LENGTH = 200
MAX_PASSWORD_LENGTH = passwords.MAX_LENGTH
MAX_CREDENTIAL_LENGTH = 8192
_A = "kiln.auth.v1."
TEXT_LIMITS = textlimits.TextLimits(
    default=256,  # ids, refresh tokens and API keys are far shorter
    fields={
        # A malformed credential is UNAUTHENTICATED like any other wrong one; only absurd
        # lengths are refused here.
        f"{_A}ApiKeyCredential.api_key": MAX_CREDENTIAL_LENGTH,
        f"{_A}RefreshTokenRequest.refresh_token": MAX_CREDENTIAL_LENGTH,
        f"{_A}LogoutRequest.refresh_token": MAX_CREDENTIAL_LENGTH,
        f"{_A}RegisterRequest.email": MAX_EMAIL_LENGTH,
        f"{_A}RegisterRequest.password": MAX_PASSWORD_LENGTH,
        f"{_A}RegisterRequest.display_name": MAX_NAME_LENGTH,
        f"{_A}PasswordCredential.email": MAX_EMAIL_LENGTH,
        f"{_A}PasswordCredential.password": MAX_PASSWORD_LENGTH,
        f"{_A}ChangePasswordRequest.old_password": MAX_PASSWORD_LENGTH,
        f"{_A}ChangePasswordRequest.new_password": MAX_PASSWORD_LENGTH,
        f"{_A}CreateApiKeyRequest.name": MAX_NAME_LENGTH,
        f"{_A}ListApiKeysRequest.page_token": paging.MAX_TOKEN_LENGTH,
        f"{_A}ListUsersRequest.page_token": paging.MAX_TOKEN_LENGTH,
        f"{_A}ListUsersRequest.search": MAX_EMAIL_LENGTH,
        f"{_A}User.email": MAX_EMAIL_LENGTH,
        f"{_A}User.display_name": MAX_NAME_LENGTH,
    },
)
"""Every text field of every AuthService request is at most this long (checked before the
handler runs, after the token); the checks below give finer messages within it."""
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


def raise_if(violations: list[errors.FieldViolation]) -> None:
    """Raises INVALID_ARGUMENT listing every violation, if there are any."""
    if violations:
        raise errors.InvalidArgument(violations)
