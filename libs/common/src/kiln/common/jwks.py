"""A key source backed by the auth service's GetJwks, cached and refreshed.

Keys are fetched once, refreshed every `max_age` seconds (so a removed key stops verifying),
and re-fetched early when a token names an unknown `kid` (so a new key verifies at once),
at most once per `min_refresh_interval` so forged `kid`s cannot flood the auth service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import structlog
from cryptography.hazmat.primitives.asymmetric import ed25519

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import errors
from kiln.common.tokens import keys_from_jwks

log = structlog.get_logger("kiln.jwks")


class JwksKeySource:
    """Caches the keys a fetch function returns (as JWKS JSON)."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[str]],
        *,
        max_age: float = 300.0,
        min_refresh_interval: float = 10.0,
    ) -> None:
        self._fetch = fetch
        self._max_age = max_age
        self._min_interval = min_refresh_interval
        self._keys: dict[str, ed25519.Ed25519PublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at = -float("inf")
        self._lock = asyncio.Lock()
        self.fetch_count = 0

    async def get_key(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        now = time.monotonic()
        stale = self._fetched_at is None or now - self._fetched_at > self._max_age
        if stale or (kid not in self._keys and now - self._attempted_at >= self._min_interval):
            await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if now - self._attempted_at < self._min_interval and self._fetched_at is not None:
                return  # another caller refreshed while we waited
            self._attempted_at = now
            try:
                self.fetch_count += 1
                self._keys = keys_from_jwks(await self._fetch())
                self._fetched_at = now
            except (grpc.aio.AioRpcError, OSError, ValueError) as exc:
                log.warning("jwks_fetch_failed", error=type(exc).__name__)
                if self._fetched_at is None:
                    raise errors.Unavailable(
                        "token keys cannot be fetched yet", reason="TOKEN_KEYS_UNAVAILABLE"
                    ) from None


def grpc_jwks_fetcher(
    channel: grpc.aio.Channel, timeout: float = 5.0
) -> Callable[[], Awaitable[str]]:
    """A fetch function that calls AuthService.GetJwks over `channel`."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)

    async def fetch() -> str:
        response = await stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=timeout)
        return str(response.jwks_json)

    return fetch
