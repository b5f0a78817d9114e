"""The one way a service builds the token verifier its interceptors check callers with.

Auth verifies with its own key ring; tasks and imagegen with the keys auth publishes
(GetJwks), fetched over a channel the caller closes when it stops.
"""

from __future__ import annotations

import grpc

from kiln.common import jwks, tls
from kiln.common.settings import GrpcClientTlsSettings, TokenSettings
from kiln.common.tokens import KeySource, TokenVerifier


def build_verifier(
    keys: KeySource, settings: TokenSettings, *, cache_size: int = TokenVerifier.cache_size
) -> TokenVerifier:
    """A verifier of tokens signed by `keys`, with the issuer, audience and leeway of
    `settings`, remembering up to `cache_size` verified tokens (0: none)."""
    return TokenVerifier(
        keys,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_leeway,
        cache_size=cache_size,
    )


def auth_service_verifier(
    auth_target: str, tokens: TokenSettings, client_tls: GrpcClientTlsSettings
) -> tuple[TokenVerifier, grpc.aio.Channel]:
    """A verifier with the auth service's published keys (cached, refreshed on an unknown
    `kid`), and the channel to auth it uses: close it on shutdown."""
    channel = tls.channel(auth_target, client_tls)
    keys = jwks.JwksKeySource(jwks.grpc_jwks_fetcher(channel))
    return build_verifier(keys, tokens), channel
