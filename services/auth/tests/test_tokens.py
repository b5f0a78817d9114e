"""Access tokens: what auth issues, what GetJwks serves, and every forged or broken token
the verifier refuses (through the real interceptor of the real server)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth import keys
from auth.testing import SIGNING_KEY, Account, AuthServer
from kiln.auth.v1 import auth_pb2
from kiln.common import errors, jwks, tokens
from kiln.common.principal import Role
from kiln.common.tokens import TokenVerifier

KID = keys.thumbprint(SIGNING_KEY.public_key())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(account: Account, **changes: Any) -> dict[str, Any]:
    """Valid claims for `account`, with `changes` applied (None removes a claim)."""
    now = int(time.time())
    claims = {
        "sub": account.user.id,
        "email": account.email,
        "role": "user",
        "iss": "kiln-auth",
        "aud": "kiln",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def sign(
    claims: dict[str, Any], key: ed25519.Ed25519PrivateKey = SIGNING_KEY, kid: str = KID
) -> str:
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


def unsigned(claims: dict[str, Any], header: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, for algorithms PyJWT refuses to produce."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def hs256_with_public_key(claims: dict[str, Any], secret: bytes) -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the public key."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def tampered(token: str) -> str:
    """A real token whose payload was changed to claim the admin role."""
    head, body, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["role"] = "admin"
    return f"{head}.{b64(json.dumps(claims).encode())}.{signature}"


PUBLIC_PEM = SIGNING_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
PUBLIC_RAW = SIGNING_KEY.public_key().public_bytes(
    serialization.Encoding.Raw, serialization.PublicFormat.Raw
)

BAD_TOKENS: dict[str, Callable[[Account], str]] = {
    "expired": lambda a: sign(claims_of(a, exp=int(time.time()) - 60)),
    "not yet valid": lambda a: sign(claims_of(a, nbf=int(time.time()) + 60)),
    "forged with another key": lambda a: sign(claims_of(a), ed25519.Ed25519PrivateKey.generate()),
    "alg none": lambda a: unsigned(claims_of(a), {"alg": "none", "typ": "JWT", "kid": KID}),
    "alg none, no kid": lambda a: unsigned(claims_of(a), {"alg": "none"}),
    "HS256 keyed with the PEM public key": lambda a: hs256_with_public_key(
        claims_of(a), PUBLIC_PEM
    ),
    "HS256 keyed with the raw public key": lambda a: hs256_with_public_key(
        claims_of(a), PUBLIC_RAW
    ),
    "wrong audience": lambda a: sign(claims_of(a, aud="someone-else")),
    "wrong issuer": lambda a: sign(claims_of(a, iss="evil-auth")),
    "unknown kid": lambda a: sign(claims_of(a), kid="no-such-key"),
    "no kid": lambda a: jwt.encode(claims_of(a), SIGNING_KEY, algorithm="EdDSA"),
    "tampered payload": lambda a: tampered(a.tokens.access_token),
    "missing sub": lambda a: sign(claims_of(a, sub=None)),
    "missing exp": lambda a: sign(claims_of(a, exp=None)),
    "unknown role": lambda a: sign(claims_of(a, role="root")),
    "truncated": lambda a: a.tokens.access_token[:-10],
    "not a JWT": lambda _a: "definitely-not-a-token",
}


async def test_issued_token_carries_the_documented_claims(auth: AuthServer) -> None:
    """An access token is an EdDSA JWT with a kid header and claims sub, email, role, iss,
    aud, iat, nbf, exp (15 minutes after iat by default) and a unique jti."""
    account = await auth.account()
    token = account.tokens.access_token
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA"
    assert header["kid"] == KID
    claims = jwt.decode(token, SIGNING_KEY.public_key(), algorithms=["EdDSA"], audience="kiln")
    assert claims["sub"] == account.user.id
    assert claims["email"] == account.email
    assert claims["role"] == "user"
    assert claims["iss"] == "kiln-auth"
    assert claims["aud"] == "kiln"
    assert claims["nbf"] == claims["iat"]
    assert claims["exp"] - claims["iat"] == 900
    assert len(claims["jti"]) == 32
    assert account.tokens.token_type == "Bearer"
    assert account.tokens.access_token_expire_time.seconds == claims["exp"]
    other = await auth.login(account.email)
    assert (
        jwt.decode(
            other.tokens.access_token,
            SIGNING_KEY.public_key(),
            algorithms=["EdDSA"],
            audience="kiln",
        )["jti"]
        != claims["jti"]
    )


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_token_is_unauthenticated(auth: AuthServer, kind: str) -> None:
    """Expired, not-yet-valid, forged, alg none, HS256 keyed with the public key, wrong
    audience or issuer, unknown or missing kid, tampered payload, missing claims: each one
    gets UNAUTHENTICATED, on a user RPC and on an admin RPC alike."""
    account = await auth.account()
    token = BAD_TOKENS[kind](account)
    metadata = (("authorization", f"Bearer {token}"),)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_valid_hand_signed_token_is_accepted(auth: AuthServer) -> None:
    """The control for the test above: the same construction with valid claims passes, so
    each refusal is due to the one thing that was broken."""
    account = await auth.account()
    metadata = (("authorization", f"Bearer {sign(claims_of(account))}"),)
    response = await auth.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
    assert response.user.id == account.user.id


async def test_get_jwks_serves_the_verifying_keys(auth: AuthServer) -> None:
    """GetJwks needs no token and returns the public key (never private material) with the
    issuer and audience; a token auth issued verifies with exactly those."""
    response = await auth.stub.GetJwks(auth_pb2.GetJwksRequest())
    document = json.loads(response.jwks_json)
    assert [k["kid"] for k in document["keys"]] == [KID]
    assert all("d" not in k for k in document["keys"])
    assert document["keys"][0]["alg"] == "EdDSA"
    assert (response.issuer, response.audience) == ("kiln-auth", "kiln")
    account = await auth.account()
    verifier = TokenVerifier(
        tokens.StaticKeySource(tokens.keys_from_jwks(response.jwks_json)),
        response.issuer,
        response.audience,
    )
    principal = await verifier.verify(account.tokens.access_token)
    assert principal.user_id == account.user.id


async def test_jwks_key_source_fetches_from_the_real_service_once(auth: AuthServer) -> None:
    """kiln.common.jwks against the real GetJwks: many verifications cost one fetch, and a
    burst of unknown kids costs one more fetch, not one each (the refetch is rate-limited)."""
    source = jwks.JwksKeySource(jwks.grpc_jwks_fetcher(auth.channel), min_refresh_interval=0.2)
    verifier = TokenVerifier(source, "kiln-auth", "kiln")
    account = await auth.account()
    for _ in range(20):
        assert (await verifier.verify(account.tokens.access_token)).user_id == account.user.id
    assert source.fetch_count == 1
    await asyncio.sleep(0.3)
    for _ in range(20):
        with pytest.raises(errors.Unauthenticated, match="invalid or expired"):
            await verifier.verify(sign(claims_of(account), kid=f"kid-{uuid.uuid4().hex}"))
    assert source.fetch_count == 2


async def test_token_issued_in_the_second_of_a_sign_out_is_stamped_after_it(
    auth: AuthServer,
) -> None:
    """A token issued in the same second as a "log out everywhere" carries iat (and nbf) of
    the next second, the account's tokens_not_before, so the sign-out does not refuse it; a
    token issued later keeps its own time."""
    issuer = auth.app.core.issuer
    now = datetime.datetime(2026, 12, 5, 12, 0, 0, 400_000, tzinfo=datetime.UTC)
    bound = now.replace(microsecond=0) + datetime.timedelta(seconds=1)
    token = issuer.issue(uuid.uuid4(), "a@example.com", Role.USER, now, bound).token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iat"] == claims["nbf"] == int(bound.timestamp())
    later = now + datetime.timedelta(seconds=30)
    token = issuer.issue(uuid.uuid4(), "a@example.com", Role.USER, later, bound).token
    assert jwt.decode(token, options={"verify_signature": False})["iat"] == int(later.timestamp())
