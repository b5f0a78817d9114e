"""Access-token verification: EdDSA JWTs checked locally against a source of public keys.

Services never call the auth service per request: a key source hands out the public key for
a token's `kid` (from a static set, or from auth's GetJwks, cached), and `TokenVerifier`
checks signature, algorithm, issuer, audience and times.
"""

from __future__ import annotations

import dataclasses
import json
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
class TokenVerifier:
    """Verifies access tokens and turns them into principals."""

    keys: KeySource
    issuer: str
    audience: str
    leeway: float = 5.0

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; `Unauthenticated` for anything else."""
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
            return Principal(
                user_id=str(claims["sub"]),
                email=str(claims.get("email", "")),
                role=Role(claims["role"]),
                token_id=str(claims["jti"]),
                issued_at=int(claims["iat"]),
            )
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise errors.Unauthenticated(_INVALID) from None
