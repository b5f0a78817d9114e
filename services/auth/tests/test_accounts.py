"""Register and GetCurrentUser through the gRPC API, with every bad input they refuse."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from auth.testing import PASSWORD, AuthServer, bearer, new_email
from kiln.auth.v1 import auth_pb2
from kiln.common import interceptors
from kiln.common.testing.status import error_reason


def violations(error: grpc.aio.AioRpcError) -> list[str]:
    """The fields named by the BadRequest detail of a failed call."""
    for key, value in error.trailing_metadata() or ():
        if key == interceptors.STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    return [v.field for v in bad_request.field_violations]
    return []


async def test_register_returns_a_normalised_active_user(auth: AuthServer) -> None:
    """Register trims and lower-cases the email and creates an active `user` account."""
    email = new_email()
    user = await auth.register(f"  {email.upper()} ", name="  Ada  ")
    assert user.email == email
    assert user.display_name == "Ada"
    assert user.role == auth_pb2.ROLE_USER
    assert user.active
    assert user.id
    assert user.create_time.seconds > 0


async def test_duplicate_email_is_already_exists(auth: AuthServer) -> None:
    """A second account with the same email, in any case, gets ALREADY_EXISTS with reason
    EMAIL_TAKEN."""
    email = new_email()
    await auth.register(email)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.register(email.upper())
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(caught.value) == "EMAIL_TAKEN"


async def test_concurrent_registrations_of_one_email_give_one_account(auth: AuthServer) -> None:
    """Racing Registers of one email: exactly one succeeds, the rest get ALREADY_EXISTS
    (the unique index decides, not a check before the insert)."""
    email = new_email()
    results = await asyncio.gather(
        *(auth.register(email) for _ in range(8)), return_exceptions=True
    )
    successes = [r for r in results if isinstance(r, auth_pb2.User)]
    failures = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(successes) == 1
    assert {f.code() for f in failures} == {grpc.StatusCode.ALREADY_EXISTS}


@pytest.mark.parametrize(
    ("email", "password", "name", "fields"),
    [
        ("", PASSWORD, "N", ["email"]),
        ("not-an-email", PASSWORD, "N", ["email"]),
        ("a@b", PASSWORD, "N", ["email"]),
        ("two@@example.com", PASSWORD, "N", ["email"]),
        ("x" * 250 + "@example.com", PASSWORD, "N", ["email"]),
        ("{new}", "", "N", ["password"]),
        ("{new}", "short", "N", ["password"]),
        ("{new}", "p" * 1025, "N", ["password"]),
        ("{new}", "{email}", "N", ["password"]),
        ("{new}", PASSWORD, "", ["display_name"]),
        ("{new}", PASSWORD, "   ", ["display_name"]),
        ("{new}", PASSWORD, "n" * 201, ["display_name"]),
        ("{new}", PASSWORD, "bell\a", ["display_name"]),
        ("", "", "", ["email", "password", "display_name"]),
    ],
)
async def test_bad_registration_is_invalid_argument_naming_the_field(
    auth: AuthServer, email: str, password: str, name: str, fields: list[str]
) -> None:
    """Malformed email, short/long password, password equal to the email, empty or bad
    display name: INVALID_ARGUMENT whose field violations name each bad field."""
    fresh = new_email()
    email = fresh if email == "{new}" else email
    password = fresh.upper() if password == "{email}" else password
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await auth.register(email, password, name)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violations(caught.value) == fields


async def test_get_current_user_returns_the_caller(auth: AuthServer) -> None:
    """GetCurrentUser answers with the account the access token belongs to."""
    account = await auth.account(name="Grace")
    response = await auth.stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=account.metadata
    )
    assert response.user.id == account.user.id
    assert response.user.email == account.email
    assert response.user.display_name == "Grace"


async def test_get_current_user_needs_a_token(auth: AuthServer) -> None:
    """Without a token, or with garbage, GetCurrentUser is UNAUTHENTICATED."""
    for metadata in ((), bearer("garbage"), (("authorization", "Basic abc"),)):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await auth.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
