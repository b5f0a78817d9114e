"""The auth service reads only small requests: its receive limit fits its API (64 KiB by
default), so a 15 MiB message is refused by the transport, not held in memory."""

from __future__ import annotations

import grpc
import pytest

from auth.testing import AuthServer
from kiln.auth.v1 import auth_pb2


async def test_a_request_over_the_auth_limit_is_resource_exhausted(auth: AuthServer) -> None:
    """A 100 KiB Register is RESOURCE_EXHAUSTED (the receive limit); one within it but
    with an overlong field is INVALID_ARGUMENT naming the field (the text limits)."""
    huge = auth_pb2.RegisterRequest(email="a@example.com", password="p" * 100 * 1024)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.stub.Register(huge)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    long_name = auth_pb2.RegisterRequest(
        email="a@example.com", password="long enough password", display_name="n" * 5000
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.stub.Register(long_name)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "display_name" in (caught.value.details() or "")
