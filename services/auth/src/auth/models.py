"""Domain objects of the auth service (no secrets: hashes stay in the store)."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from typing import Generic, TypeVar

from kiln.common.principal import Role

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class User:
    """A person or service account."""

    id: uuid.UUID
    email: str
    display_name: str
    role: Role
    active: bool
    create_time: datetime.datetime
    update_time: datetime.datetime
    tokens_not_before: datetime.datetime | None = None
    """Access tokens issued before this are refused everywhere (None: none are)."""


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """An API key's metadata; its secret is shown once and only its hash is kept."""

    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    prefix: str
    role: Role
    create_time: datetime.datetime
    expire_time: datetime.datetime | None
    revoke_time: datetime.datetime | None
    last_used_time: datetime.datetime | None


@dataclasses.dataclass(frozen=True)
class TokenPair:
    """What a sign-in or a refresh returns; no refresh token for API-key sign-ins."""

    access_token: str
    access_token_expire_time: datetime.datetime
    refresh_token: str | None = dataclasses.field(default=None, repr=False)
    refresh_token_expire_time: datetime.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the token for the next (empty on the last page)."""

    items: list[T]
    next_page_token: str
