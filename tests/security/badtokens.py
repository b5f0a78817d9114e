"""Access tokens that must never be accepted, made with the stack's real signing key where
a valid signature matters (so only the one broken property differs from a good token).

services/auth/tests/test_tokens.py checks the same kinds against the auth server alone, and
services/auth/tests/test_keys.py covers key rotation; here they go to every service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth import keys


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class BadTokens:
    """Builds each bad kind from a real token of a real user."""

    def __init__(self, key_dir: Path, good_token: str) -> None:
        self.key = keys.development_key(key_dir)
        self.kid = keys.thumbprint(self.key.public_key())
        self.good = good_token
        self.claims: dict[str, Any] = jwt.decode(good_token, options={"verify_signature": False})

    def _claims(self, **changes: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {**self.claims, "iat": now, "nbf": now, "exp": now + 600}
        claims["jti"] = uuid.uuid4().hex
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def _sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        return jwt.encode(claims, self.key, algorithm="EdDSA", headers={"kid": kid or self.kid})

    def _hand_made(self, header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
        head = _b64(json.dumps(header).encode())
        body = _b64(json.dumps(claims).encode())
        if not secret:
            return f"{head}.{body}."
        mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{_b64(mac)}"

    def _tampered(self) -> str:
        head, body, signature = self.good.split(".")
        claims = json.loads(_unb64(body))
        claims["role"] = "admin"
        return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"

    def all(self) -> dict[str, str]:
        """kind -> token, fresh (times are relative to now)."""
        public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        stranger = ed25519.Ed25519PrivateKey.generate()
        kinds: dict[str, Callable[[], str]] = {
            "expired": lambda: self._sign(self._claims(exp=int(time.time()) - 120)),
            "nbf_future": lambda: self._sign(self._claims(nbf=int(time.time()) + 600)),
            "wrong_aud": lambda: self._sign(self._claims(aud="someone-else")),
            "wrong_iss": lambda: self._sign(self._claims(iss="evil-auth")),
            "alg_none": lambda: self._hand_made(
                {"alg": "none", "typ": "JWT", "kid": self.kid}, self._claims(), b""
            ),
            "hs256_public_key": lambda: self._hand_made(
                {"alg": "HS256", "typ": "JWT", "kid": self.kid}, self._claims(), public_pem
            ),
            "unknown_kid": lambda: jwt.encode(
                self._claims(), stranger, algorithm="EdDSA", headers={"kid": "no-such-kid"}
            ),
            "foreign_key_same_kid": lambda: jwt.encode(
                self._claims(), stranger, algorithm="EdDSA", headers={"kid": self.kid}
            ),
            "tampered_payload": self._tampered,
            "missing_sub": lambda: self._sign(self._claims(sub=None)),
            "garbage": lambda: "not-a-jwt",
        }
        return {kind: make() for kind, make in kinds.items()}
