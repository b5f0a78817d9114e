"""Tokens across services: the tasks service (a real `python -m tasks` process) accepts an
access token issued by the auth service and refuses forged ones, verifying locally with the
keys it fetched once from auth's GetJwks, never calling auth per request."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth import app, servicer
from auth.testing import AuthServer, make_config, start_server, stop_server
from kiln.auth.v1 import auth_pb2
from kiln.common.testing import AnyNats
from kiln.common.testing.services import ServiceProcess, migrate
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

# Codes that mean "the token was accepted": the skeleton's UNIMPLEMENTED, or a real answer.
ACCEPTED = {grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED}


class JwksCounter:
    """Counts GetJwks calls reaching the auth servicer."""

    def __init__(self) -> None:
        self.calls = 0


@pytest.fixture
async def counted_auth(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AuthServer, JwksCounter]]:
    """An in-process auth server whose GetJwks calls are counted."""
    counter = JwksCounter()
    original = servicer.AuthServicer.GetJwks

    async def counting(self: servicer.AuthServicer, request: Any, context: Any) -> Any:
        counter.calls += 1
        return await original(self, request, context)

    monkeypatch.setattr(servicer.AuthServicer, "GetJwks", counting)
    cfg = make_config(database_url)
    app.migrate(cfg)
    server = await start_server(cfg)
    yield server, counter
    await stop_server(server)


@pytest.fixture
def tasks_env(postgres_server: Any, nats_server: AnyNats) -> dict[str, str]:
    """Environment of a tasks process with its own migrated database."""
    postgres_server.ensure_running()
    nats_server.ensure_running()
    name = f"tasks_{uuid.uuid4().hex[:12]}"
    env = {
        "DATABASE_URL": postgres_server.create_database(name),
        "NATS_URL": nats_server.url,
        "METRICS_PORT": "-1",
    }
    migrate("tasks", env)
    return env


async def code_of(stub: tasks_pb2_grpc.TaskServiceStub, token: str) -> grpc.StatusCode:
    """The code ListTasks ends with when called with `token`."""
    try:
        await stub.ListTasks(
            tasks_pb2.ListTasksRequest(), metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )  # fmt: skip
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_tasks_verifies_auth_tokens_locally(
    counted_auth: tuple[AuthServer, JwksCounter], tasks_env: dict[str, str]
) -> None:
    """A token from auth's Login is accepted by tasks (UNIMPLEMENTED or OK, past the auth
    check); a token signed by another key under auth's kid, one with an unknown kid, an
    expired one and no token at all are UNAUTHENTICATED. Across 30 calls, tasks fetched
    auth's keys at most twice: verification is local."""
    auth, counter = counted_auth
    account = await auth.account()
    real_token = account.tokens.access_token
    kid = jwt.get_unverified_header(real_token)["kid"]
    claims = jwt.decode(real_token, options={"verify_signature": False})
    impostor = ed25519.Ed25519PrivateKey.generate()
    forged = jwt.encode(claims, impostor, algorithm="EdDSA", headers={"kid": kid})
    unknown_kid = jwt.encode(claims, impostor, algorithm="EdDSA", headers={"kid": "rogue"})
    expired_claims = {**claims, "exp": int(time.time()) - 120}
    signing = auth.app.ring.signing_key
    expired = jwt.encode(expired_claims, signing, algorithm="EdDSA", headers={"kid": kid})

    env = {**tasks_env, "AUTH_TARGET": f"127.0.0.1:{auth.port}"}
    with ServiceProcess("tasks", env) as tasks:
        async with grpc.aio.insecure_channel(tasks.target) as channel:
            stub = tasks_pb2_grpc.TaskServiceStub(channel)
            before = counter.calls
            for _ in range(20):
                assert await code_of(stub, real_token) in ACCEPTED
            for token in (forged, unknown_kid, expired, "", "garbage") * 2:
                assert await code_of(stub, token) == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.ListTasks(tasks_pb2.ListTasksRequest(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            fetches = counter.calls - before
    assert 1 <= fetches <= 2, fetches
    me = await auth.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=account.metadata)
    assert me.user.id == claims["sub"]
