"""Access tokens: EdDSA JWTs signed with the key ring's signing key."""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import jwt

from auth.keys import KeyRing
from kiln.common.principal import Role
from kiln.common.tokens import ALGORITHM


@dataclasses.dataclass(frozen=True)
class AccessToken:
    """A signed access token and when it expires."""

    token: str
    expire_time: datetime.datetime


@dataclasses.dataclass(frozen=True)
class TokenIssuer:
    """Signs access tokens with claims sub, email, role, iss, aud, iat, nbf, exp and jti."""

    ring: KeyRing
    issuer: str
    audience: str
    ttl: datetime.timedelta

    def issue(
        self,
        user_id: uuid.UUID,
        email: str,
        role: Role,
        now: datetime.datetime,
        not_before: datetime.datetime | None = None,
    ) -> AccessToken:
        """A token for the user, valid from `now` for the configured lifetime.

        `not_before` is the user's tokens_not_before: a token issued in the very second of a
        sign-out everywhere is stamped with the next second (within every verifier's
        leeway), so it is not refused as one of the tokens the sign-out ended."""
        issued = int(now.timestamp())
        if not_before is not None:
            issued = max(issued, int(not_before.timestamp()))
        expires = issued + max(1, int(self.ttl.total_seconds()))
        claims = {
            "sub": str(user_id),
            "email": email,
            "role": role.value,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(
            claims,
            self.ring.signing_key,
            algorithm=ALGORITHM,
            headers={"kid": self.ring.signing_kid},
        )
        return AccessToken(token, datetime.datetime.fromtimestamp(expires, datetime.UTC))
