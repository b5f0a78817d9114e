"""Password policy and argon2id hashing, run off the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets

import argon2
import argon2.exceptions

from kiln.common import errors

MIN_LENGTH = 12
# argon2 hashes any length, but a megabyte password would still cost time to read and copy;
# a cap keeps Register and Login cheap to refuse.
MAX_LENGTH = 1024


def policy_violations(field: str, password: str, email: str) -> list[errors.FieldViolation]:
    """What is wrong with a new password, as field violations on `field`."""
    if not password:
        return [errors.FieldViolation(field, "is required")]
    if len(password) < MIN_LENGTH:
        return [errors.FieldViolation(field, f"must be at least {MIN_LENGTH} characters")]
    if len(password) > MAX_LENGTH:
        return [errors.FieldViolation(field, f"must be at most {MAX_LENGTH} characters")]
    if email and password.strip().lower() == email.strip().lower():
        return [errors.FieldViolation(field, "must not be the email address")]
    return []


@dataclasses.dataclass(frozen=True)
class HashParameters:
    """argon2id cost parameters."""

    memory_kib: int
    time_cost: int
    parallelism: int


class PasswordHasher:
    """argon2id hashing and verification in a worker thread, never on the event loop."""

    def __init__(self, params: HashParameters) -> None:
        self.params = params
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            type=argon2.Type.ID,
        )
        # Verified against when the email is unknown, so both paths cost the same.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        """The encoded argon2id hash of `password` (salt and parameters included)."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, encoded: str | None, password: str) -> bool:
        """Whether `password` matches `encoded`; with None, burns the same time and fails."""
        target = encoded if encoded is not None else self._dummy_hash
        matched = await asyncio.to_thread(self._check, target, password)
        return matched and encoded is not None

    def needs_rehash(self, encoded: str) -> bool:
        """Whether `encoded` was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except argon2.exceptions.InvalidHashError:
            return True

    def _check(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, password)
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
