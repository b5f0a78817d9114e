"""Signing test tokens with a throwaway Ed25519 key, including deliberately bad ones."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519

from kiln.common.tokens import StaticKeySource, TokenVerifier

ISSUER = "kiln-auth"
AUDIENCE = "kiln"


class TestSigner:
    """Issues EdDSA tokens the way the auth service does, for tests of verifiers."""

    __test__ = False  # not a pytest test class

    def __init__(self, kid: str = "test-key") -> None:
        self.kid = kid
        self.private_key = ed25519.Ed25519PrivateKey.generate()
        self.public_key = self.private_key.public_key()

    def verifier(self, leeway: float = 0.0) -> TokenVerifier:
        """A verifier that trusts this signer's key only."""
        return TokenVerifier(StaticKeySource({self.kid: self.public_key}), ISSUER, AUDIENCE, leeway)

    def claims(
        self, user_id: str = "user-1", role: str = "user", ttl: float = 300, **overrides: Any
    ) -> dict[str, Any]:
        """Valid claims, with any of them replaced or (value None) removed."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "email": f"{user_id}@example.com",
            "role": role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl),
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        user_id: str = "user-1",
        role: str = "user",
        ttl: float = 300,
        headers: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """A signed token; `overrides` change claims, `headers` the JOSE header."""
        return jwt.encode(
            self.claims(user_id, role, ttl, **overrides),
            self.private_key,
            algorithm="EdDSA",
            headers={"kid": self.kid, **(headers or {})},
        )
