"""The verifier builder applies the issuer, audience and leeway of the settings it is given."""

from __future__ import annotations

import pytest

from kiln.common import errors, verifiers
from kiln.common.settings import TokenSettings
from kiln.common.testing.tokens import AUDIENCE, ISSUER, TestSigner
from kiln.common.tokens import StaticKeySource


async def test_built_verifier_checks_the_configured_issuer_and_audience() -> None:
    """A token of the configured issuer and audience passes; another issuer or audience is
    UNAUTHENTICATED."""
    signer = TestSigner()
    settings = TokenSettings(jwt_issuer=ISSUER, jwt_audience=AUDIENCE, jwt_leeway=0.0)
    verifier = verifiers.build_verifier(StaticKeySource({signer.kid: signer.public_key}), settings)
    assert (await verifier.verify(signer.token("u-1"))).user_id == "u-1"
    for foreign in (signer.token("u-1", iss="someone-else"), signer.token("u-1", aud="other")):
        with pytest.raises(errors.Unauthenticated):
            await verifier.verify(foreign)
