"""Access-token verification: EdDSA JWTs checked locally against a source of public keys.

Services never call the auth service per request: a key source hands out the public key for
a token's `kid` (from a static set, or from auth's GetJwks, cached), and `TokenVerifier`
checks signature, algorithm, issuer, audience and times.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

from kiln.common import errors
from kiln.common.principal import Principal, Role

ALGORITHM = "EdDSA"
_REQUIRED_CLAIMS = ["sub", "exp", "iat", "nbf", "iss", "aud", "jti", "role"]
_INVALID = "the access token is invalid or expired"


class KeySource(Protocol):
    """Hands out the public key for a key id, or None when it does not know it."""

    async def get_key(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        """The key for `kid`, or None."""
        ...


class StaticKeySource:
    """A fixed set of keys, for the auth service itself and for tests."""

    def __init__(self, keys: Mapping[str, ed25519.Ed25519PublicKey]) -> None:
        self._keys = dict(keys)

    async def get_key(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        return self._keys.get(kid)


def keys_from_jwks(jwks_json: str) -> dict[str, ed25519.Ed25519PublicKey]:
    """Parses a JWKS document, keeping only Ed25519 (OKP) keys that have a `kid`."""
    found: dict[str, ed25519.Ed25519PublicKey] = {}
    for jwk in json.loads(jwks_json).get("keys", []):
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not jwk.get("kid"):
            continue
        key = OKPAlgorithm.from_jwk(jwk)
        if isinstance(key, ed25519.Ed25519PublicKey):
            found[jwk["kid"]] = key
    return found


def public_jwk(kid: str, key: ed25519.Ed25519PublicKey) -> dict[str, Any]:
    """The JWK form of a public key, as served in a JWKS."""
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(key, as_dict=True)
    jwk.update({"kid": kid, "use": "sig", "alg": ALGORITHM})
    return jwk


@dataclasses.dataclass(frozen=True)
class _Verified:
    principal: Principal
    kid: str
    key: ed25519.Ed25519PublicKey
    valid_until: float
    """The token's `exp` plus the leeway (epoch seconds)."""


@dataclasses.dataclass(frozen=True)
class TokenVerifier:
    """Verifies access tokens and turns them into principals.

    A token that verified is remembered (by its text, up to `cache_size` tokens) until it
    expires, so a client calling many times pays for the signature check once. A remembered
    token is still refused once it expires, and checked again in full when the key source
    no longer hands out the key it verified with (a removed or refreshed key). What is not
    in the token, such as a revoked account, is checked by the caller on every call.
    """

    keys: KeySource
    issuer: str
    audience: str
    leeway: float = 5.0
    cache_size: int = 10_000
    _verified: dict[str, _Verified] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def remembered(self) -> int:
        """Tokens verified and remembered now."""
        return len(self._verified)

    def remembers(self, token: str) -> bool:
        """Whether `token` is remembered as verified (it may have expired since)."""
        return token in self._verified

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; `Unauthenticated` for anything else."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() > known.valid_until:
                del self._verified[token]
                raise errors.Unauthenticated(_INVALID)
            if await self.keys.get_key(known.kid) is known.key:
                return known.principal
            del self._verified[token]  # the key changed: verify again in full
        return await self._verify_and_remember(token)

    def _remember(self, token: str, verified: _Verified) -> None:
        if self.cache_size <= 0:
            return
        if len(self._verified) >= self.cache_size:
            now = time.time()
            for stale in [t for t, v in self._verified.items() if now > v.valid_until]:
                del self._verified[stale]
            while len(self._verified) >= self.cache_size:  # still full: drop the oldest
                del self._verified[next(iter(self._verified))]
        self._verified[token] = verified

    async def _verify_and_remember(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise errors.Unauthenticated(_INVALID) from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or not kid:
            raise errors.Unauthenticated(_INVALID)
        key = await self.keys.get_key(kid)
        if key is None:
            raise errors.Unauthenticated(_INVALID)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
            if not claims["sub"] or not claims["jti"]:
                raise errors.Unauthenticated(_INVALID)
            caller = Principal(
                user_id=str(claims["sub"]),
                email=str(claims.get("email", "")),
                role=Role(claims["role"]),
                token_id=str(claims["jti"]),
                issued_at=int(claims["iat"]),
            )
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise errors.Unauthenticated(_INVALID) from None
        self._remember(token, _Verified(caller, kid, key, float(claims["exp"]) + self.leeway))
        return caller
