"""What the auth logic needs, built once from config and shared by its modules."""

from __future__ import annotations

import dataclasses
import datetime
import uuid
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from auth.config import AuthConfig
from auth.hashgate import HashGate
from auth.issuer import TokenIssuer
from auth.keys import KeyRing
from auth.passwords import HashParameters, PasswordHasher
from auth.throttle import Limits, Throttle


def _publish_nowhere(_user_id: uuid.UUID) -> None:
    """Stands in for the account publisher where there is none (the create-admin command)."""


def utc_now() -> datetime.datetime:
    """The current time, timezone-aware."""
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True)
class Core:
    """The database, hasher, token issuer and throttle, plus the clock."""

    engine: AsyncEngine
    hasher: PasswordHasher
    issuer: TokenIssuer
    throttle: Throttle
    refresh_ttl: datetime.timedelta
    new_account_hashes: HashGate
    self_registration: bool = True
    account_changed: Callable[[uuid.UUID], None] = _publish_nowhere
    """Called after a committed change other services must learn (role, active, sign-out)."""
    clock: Callable[[], datetime.datetime] = utc_now


def build_core(config: AuthConfig, engine: AsyncEngine, ring: KeyRing) -> Core:
    """The core `config` describes, over `engine` and `ring`."""
    hasher = PasswordHasher(
        HashParameters(config.argon2_memory_kib, config.argon2_time_cost, config.argon2_parallelism)
    )
    issuer = TokenIssuer(
        ring,
        config.jwt_issuer,
        config.jwt_audience,
        datetime.timedelta(seconds=config.access_token_ttl),
    )
    throttle = Throttle(
        Limits(
            per_account=config.login_max_failures_per_account,
            per_address=config.login_max_failures_per_address,
            window=datetime.timedelta(seconds=config.login_failure_window),
            lockout=datetime.timedelta(seconds=config.login_lockout),
            registrations_per_address=config.register_max_per_address,
        )
    )
    return Core(
        engine=engine,
        hasher=hasher,
        issuer=issuer,
        throttle=throttle,
        refresh_ttl=datetime.timedelta(seconds=config.refresh_token_ttl),
        new_account_hashes=HashGate(
            config.register_max_concurrent_hashes, config.register_max_waiting
        ),
        self_registration=config.self_registration,
    )
