"""The interceptor chain through a real gRPC server: request ids, access log, error
mapping with rich details, token checks, and undecodable requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import structlog
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from scripted_servicer import SECRET_TEXT, ScriptedAuthServicer, ScriptedTaskServicer

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import interceptors, server
from kiln.common.settings import ServerSettings
from kiln.common.testing.tokens import TestSigner
from kiln.tasks.v1 import tasks_pb2, tasks_pb2_grpc

AUTH = "kiln.auth.v1.AuthService"
PUBLIC = {f"/{AUTH}/Register", f"/{AUTH}/GetJwks"}


@pytest.fixture(scope="module")
def signer() -> TestSigner:
    return TestSigner()


@pytest.fixture(scope="module")
async def channel(signer: TestSigner) -> AsyncIterator[grpc.aio.Channel]:
    settings = ServerSettings(grpc_host="127.0.0.1", grpc_port=0, shutdown_delay=0, grace_period=1)
    auth_servicer, task_servicer = ScriptedAuthServicer(), ScriptedTaskServicer()
    host = server.ServiceHost(
        settings,
        [
            server.GrpcService(
                AUTH, lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(auth_servicer, s)
            ),
            server.GrpcService(
                "kiln.tasks.v1.TaskService",
                lambda s: tasks_pb2_grpc.add_TaskServiceServicer_to_server(task_servicer, s),
            ),
        ],
        interceptors=interceptors.standard_interceptors(signer.verifier(), PUBLIC),
    )
    port = await host.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await host.server.stop(0)
    await host.monitor.stop()


def _auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == interceptors.STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    raise AssertionError("no status details")


async def test_request_id_is_echoed(channel: grpc.aio.Channel) -> None:
    """A caller's x-request-id comes back in the response metadata."""
    call = auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
        auth_pb2.GetJwksRequest(), metadata=(("x-request-id", "req-123"),)
    )
    await call
    assert ("x-request-id", "req-123") in tuple(await call.initial_metadata())


async def test_request_id_is_made_when_missing(channel: grpc.aio.Channel) -> None:
    """Without one, the server makes a request id and returns it."""
    call = auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
    await call
    ids = [v for k, v in await call.initial_metadata() if k == "x-request-id"]
    assert len(ids) == 1 and len(ids[0]) == 32


async def test_access_log_line(channel: grpc.aio.Channel, signer: TestSigner) -> None:
    """Each RPC logs one line with method, status code, duration and user."""
    with structlog.testing.capture_logs() as logs:
        await auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=_auth(signer.token("u-42"))
        )
    lines = [e for e in logs if e["event"] == "rpc_finished"]
    assert len(lines) == 1
    line = lines[0]
    assert line["method"] == f"/{AUTH}/GetCurrentUser"
    assert line["code"] == "OK"
    assert line["user"] == "u-42"
    assert line["duration_ms"] >= 0
    assert line["request_id"]


async def test_typed_error_maps_to_code_with_field_violations(channel: grpc.aio.Channel) -> None:
    """A typed domain error becomes its status code, with BadRequest field violations and
    ErrorInfo carrying the request id."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_pb2_grpc.AuthServiceStub(channel).Register(
            auth_pb2.RegisterRequest(), metadata=(("x-request-id", "r-1"),)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = _status(caught.value)
    bad_request = error_details_pb2.BadRequest()
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(bad_request)
    assert status.details[1].Unpack(info)
    assert [v.field for v in bad_request.field_violations] == ["email", "password"]
    assert info.reason == "INVALID_FIELD"
    assert info.metadata["request_id"] == "r-1"


async def test_unexpected_exception_is_internal_with_error_id(
    channel: grpc.aio.Channel, signer: TestSigner
) -> None:
    """A bug becomes INTERNAL with an error id; the exception text stays in the log."""
    with structlog.testing.capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_pb2_grpc.AuthServiceStub(channel).GetUser(
            auth_pb2.GetUserRequest(id="x"), metadata=_auth(signer.token())
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    details = caught.value.details() or ""
    assert "error id" in details
    assert SECRET_TEXT not in details and "Traceback" not in details
    assert SECRET_TEXT.encode() not in _status(caught.value).SerializeToString()
    logged = [e for e in logs if e["event"] == "rpc_internal_error"]
    assert logged and logged[0]["error_id"] in details
    assert isinstance(logged[0]["exc_info"], RuntimeError)


async def test_dependency_failure_is_unavailable(
    channel: grpc.aio.Channel, signer: TestSigner
) -> None:
    """A dependency that cannot be reached is UNAVAILABLE, without its details."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_pb2_grpc.AuthServiceStub(channel).Logout(
            auth_pb2.LogoutRequest(), metadata=_auth(signer.token())
        )
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert SECRET_TEXT not in (caught.value.details() or "")


async def test_public_method_needs_no_token(channel: grpc.aio.Channel) -> None:
    """A method on the public allowlist answers without a token."""
    response = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest())
    assert response.jwks_json == "{}"


async def test_public_method_still_binds_a_valid_token(
    channel: grpc.aio.Channel, signer: TestSigner
) -> None:
    """A public method called with a valid token knows the caller."""
    response = await auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
        auth_pb2.GetJwksRequest(), metadata=_auth(signer.token("u-7"))
    )
    assert response.issuer == "u-7"


@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer"),),
        (("authorization", "Basic abc"),),
        (("authorization", "Bearer not-a-token"),),
    ],
)
async def test_private_method_without_valid_token_is_unauthenticated(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    """A private method called without a valid bearer token is UNAUTHENTICATED."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_pb2_grpc.AuthServiceStub(channel).GetCurrentUser(
            auth_pb2.GetCurrentUserRequest(), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_role_check_is_permission_denied(
    channel: grpc.aio.Channel, signer: TestSigner
) -> None:
    """A user calling an admin-only method is PERMISSION_DENIED; an admin passes."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=_auth(signer.token()))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(), metadata=_auth(signer.token(role="admin"))
    )


async def test_unimplemented_method_says_so(channel: grpc.aio.Channel, signer: TestSigner) -> None:
    """An RPC of the contract that is not built yet answers UNIMPLEMENTED, not INTERNAL."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth_pb2_grpc.AuthServiceStub(channel).ChangePassword(
            auth_pb2.ChangePasswordRequest(), metadata=_auth(signer.token())
        )
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_undecodable_request_is_invalid_argument(
    channel: grpc.aio.Channel, signer: TestSigner
) -> None:
    """Request bytes that are not the method's message give INVALID_ARGUMENT, not UNKNOWN."""
    raw = channel.unary_unary(
        f"/{AUTH}/GetCurrentUser", request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw(b"\xff\xff\xff\xff", metadata=_auth(signer.token()))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "GetCurrentUserRequest" in (caught.value.details() or "")


async def test_stream_error_after_messages(channel: grpc.aio.Channel, signer: TestSigner) -> None:
    """A streaming RPC delivers what it yielded, then the mapped error of its failure."""
    stub = tasks_pb2_grpc.TaskServiceStub(channel)
    seen: list[int] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for update in stub.WatchTask(
            tasks_pb2.WatchTaskRequest(task_id="t1"), metadata=_auth(signer.token())
        ):
            seen.append(update.task.version)
    assert seen == [1, 2]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    chunks: list[Any] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for part in stub.GetImage(
            tasks_pb2.GetImageRequest(subtask_id="s"), metadata=_auth(signer.token())
        ):
            chunks.append(part.chunk)
    assert chunks == [b"abc"]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert SECRET_TEXT not in (caught.value.details() or "")


async def test_stream_needs_token(channel: grpc.aio.Channel) -> None:
    """A private streaming RPC without a token is UNAUTHENTICATED."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in tasks_pb2_grpc.TaskServiceStub(channel).WatchTask(
            tasks_pb2.WatchTaskRequest(task_id="t1")
        ):
            pass
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_and_reflection_are_public(channel: grpc.aio.Channel) -> None:
    """Health answers SERVING without a token (no dependencies declared here)."""
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=AUTH)
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING
