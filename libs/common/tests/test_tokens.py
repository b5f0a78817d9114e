"""Token verification: only well-formed EdDSA tokens from a known key pass."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from kiln.common import errors
from kiln.common.principal import Role
from kiln.common.testing.tokens import TestSigner


@pytest.fixture
def signer() -> TestSigner:
    return TestSigner()


async def test_valid_token_gives_principal(signer: TestSigner) -> None:
    """A valid token yields its subject, email, role and token id."""
    principal = await signer.verifier().verify(signer.token("u-9", role="admin"))
    assert principal.user_id == "u-9"
    assert principal.role is Role.ADMIN
    assert principal.email == "u-9@example.com"
    assert principal.token_id


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _alg_none(signer: TestSigner) -> str:
    return jwt.encode(signer.claims(), "", algorithm="none", headers={"kid": signer.kid})


def _hs256_with_public_key(signer: TestSigner) -> str:
    public_pem = signer.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": signer.kid}).encode()
    ).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(signer.claims()).encode()).rstrip(b"=")
    import hashlib  # noqa: PLC0415
    import hmac  # noqa: PLC0415

    signing_input = header + b"." + payload
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, signing_input, hashlib.sha256).digest()
    ).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


BAD_TOKENS: dict[str, Callable[[TestSigner], str]] = {
    "expired": lambda s: s.token(exp=int(time.time()) - 60),
    "not_yet_valid": lambda s: s.token(nbf=int(time.time()) + 600),
    "wrong_audience": lambda s: s.token(aud="someone-else"),
    "wrong_issuer": lambda s: s.token(iss="evil"),
    "missing_sub": lambda s: s.token(sub=None),
    "empty_sub": lambda s: s.token(sub=""),
    "unknown_role": lambda s: s.token(role="root"),
    "unknown_kid": lambda s: s.token(headers={"kid": "other"}),
    "alg_none": _alg_none,
    "hs256_with_public_key": _hs256_with_public_key,
    "tampered_payload": lambda s: _tamper(s.token()),
    "other_key": lambda s: TestSigner(kid=s.kid).token(),
    "garbage": lambda s: "not.a.token",
}


@pytest.mark.parametrize("kind", sorted(BAD_TOKENS))
async def test_bad_tokens_are_unauthenticated(signer: TestSigner, kind: str) -> None:
    """Every kind of bad token is refused with the same UNAUTHENTICATED error."""
    with pytest.raises(errors.Unauthenticated) as caught:
        await signer.verifier().verify(BAD_TOKENS[kind](signer))
    assert caught.value.message == "the access token is invalid or expired"
