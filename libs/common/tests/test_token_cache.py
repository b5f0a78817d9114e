"""Verified tokens are remembered until they expire, through a real gRPC server: a
remembered token still expires, and a revoked account is refused although its token is
remembered (the account check runs on every call)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
import jwt
import pytest
from scripted_servicer import ScriptedAuthServicer

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import interceptors, server
from kiln.common.account_states import AccountState, AccountStates
from kiln.common.principal import Role
from kiln.common.settings import ServerSettings
from kiln.common.testing.tokens import TestSigner
from kiln.common.tokens import TokenVerifier

AUTH = "kiln.auth.v1.AuthService"


@pytest.fixture
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture
def verifier(signer: TestSigner) -> TokenVerifier:
    return signer.verifier()


@pytest.fixture
def accounts() -> AccountStates:
    return AccountStates(strict=False)


@pytest.fixture
async def stub(
    verifier: TokenVerifier, accounts: AccountStates
) -> AsyncIterator[auth_pb2_grpc.AuthServiceStub]:
    settings = ServerSettings(grpc_host="127.0.0.1", grpc_port=0, shutdown_delay=0, grace_period=1)
    servicer = ScriptedAuthServicer()
    host = server.ServiceHost(
        settings,
        [
            server.GrpcService(
                AUTH, lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, s)
            )
        ],
        interceptors=interceptors.standard_interceptors(verifier, accounts=accounts),
    )
    port = await host.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield auth_pb2_grpc.AuthServiceStub(channel)
    await host.server.stop(0)
    await host.monitor.stop()


async def _whoami(stub: auth_pb2_grpc.AuthServiceStub, token: str) -> str:
    response = await stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=(("authorization", f"Bearer {token}"),)
    )
    return str(response.user.id)


async def _refused(stub: auth_pb2_grpc.AuthServiceStub, token: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _whoami(stub, token)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    return str(caught.value.details())


async def test_verified_token_is_remembered_and_still_expires(
    stub: auth_pb2_grpc.AuthServiceStub, verifier: TokenVerifier, signer: TestSigner
) -> None:
    """A token that verified is remembered and answers again from memory; once its `exp`
    has passed it is refused, although it is remembered."""
    token = signer.token("u-exp", ttl=1)
    assert await _whoami(stub, token) == "u-exp"
    assert verifier.remembers(token)
    assert await _whoami(stub, token) == "u-exp"
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    # The signer's verifier has no leeway: the token is refused right after `exp`.
    await asyncio.sleep(max(0.0, expires - time.time()) + 0.01)
    assert verifier.remembers(token)
    assert "invalid or expired" in await _refused(stub, token)
    assert not verifier.remembers(token)


async def test_revoked_account_is_refused_although_its_token_is_remembered(
    stub: auth_pb2_grpc.AuthServiceStub,
    verifier: TokenVerifier,
    accounts: AccountStates,
    signer: TestSigner,
) -> None:
    """Deactivating an account, or signing it out everywhere, refuses its next call even
    though the token is remembered as verified."""
    deactivated, signed_out = signer.token("u-off"), signer.token("u-out")
    for token in (deactivated, signed_out):
        await _whoami(stub, token)
        assert verifier.remembers(token)
    accounts.apply("u-off", AccountState(Role.USER, active=False))
    accounts.apply(
        "u-out", AccountState(Role.USER, active=True, tokens_not_before=int(time.time()) + 1)
    )
    assert "deactivated" in await _refused(stub, deactivated)
    await _refused(stub, signed_out)
    assert verifier.remembers(deactivated)


async def test_the_cache_is_bounded(signer: TestSigner) -> None:
    """No more than `cache_size` tokens are remembered; every token still verifies."""
    verifier = TokenVerifier(signer.verifier().keys, "kiln-auth", "kiln", cache_size=3)
    tokens = [signer.token(f"u-{i}") for i in range(5)]
    for token in tokens:
        assert (await verifier.verify(token)).user_id.startswith("u-")
    assert verifier.remembered == 3
    assert verifier.remembers(tokens[-1]) and not verifier.remembers(tokens[0])
    assert (await verifier.verify(tokens[0])).user_id == "u-0"
