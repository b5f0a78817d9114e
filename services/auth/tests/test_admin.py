"""The admin RPCs: ListUsers, GetUser, UpdateUser, and what deactivation does."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from auth.testing import Account, AuthServer
from kiln.auth.v1 import auth_pb2


async def refused(call: object) -> grpc.aio.AioRpcError:
    """The error a call ended with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def update(user_id: str, paths: list[str], **fields: object) -> auth_pb2.UpdateUserRequest:
    return auth_pb2.UpdateUserRequest(
        user=auth_pb2.User(id=user_id, **fields),  # type: ignore[arg-type]
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


async def list_all(
    auth: AuthServer, admin: Account, search: str, page_size: int
) -> tuple[list[auth_pb2.User], int]:
    """Every user matching `search`, page by page; also how many pages it took."""
    found: list[auth_pb2.User] = []
    token = ""
    pages = 0
    while True:
        response = await auth.stub.ListUsers(
            auth_pb2.ListUsersRequest(page_size=page_size, page_token=token, search=search),
            metadata=admin.metadata,
        )
        found += response.users
        pages += 1
        token = response.next_page_token
        if not token:
            return found, pages


async def test_users_get_permission_denied_on_admin_rpcs(auth: AuthServer) -> None:
    """A user (not admin) calling ListUsers, GetUser or UpdateUser: PERMISSION_DENIED, even
    with a malformed request (authorisation comes before validation)."""
    user = await auth.account()
    calls = [
        auth.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=user.metadata),
        auth.stub.GetUser(auth_pb2.GetUserRequest(id=user.user.id), metadata=user.metadata),
        auth.stub.UpdateUser(update(user.user.id, ["role"], role=2), metadata=user.metadata),
        auth.stub.UpdateUser(update("junk", ["junk"]), metadata=user.metadata),
    ]
    for call in calls:
        assert (await refused(call)).code() == grpc.StatusCode.PERMISSION_DENIED


async def test_list_users_pages_newest_first_and_searches(auth: AuthServer) -> None:
    """ListUsers returns users newest first; pages neither skip nor repeat users, even when
    a user registers between pages; search matches email or display name, ignoring case."""
    admin = await auth.admin()
    tag = uuid.uuid4().hex[:8]
    created = [await auth.register(name=f"Member {tag.upper()} {i}") for i in range(5)]
    found, pages = await list_all(auth, admin, tag, page_size=2)
    assert [u.id for u in found] == [u.id for u in reversed(created)]
    assert pages == 3

    first = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(page_size=2, search=tag), metadata=admin.metadata
    )
    newcomer = await auth.register(name=f"member {tag} late")
    rest = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(page_size=10, page_token=first.next_page_token, search=tag),
        metadata=admin.metadata,
    )
    seen = [u.id for u in first.users] + [u.id for u in rest.users]
    assert seen == [u.id for u in reversed(created)]
    assert newcomer.id not in seen

    by_email = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(search=created[0].email.upper()), metadata=admin.metadata
    )
    assert [u.id for u in by_email.users] == [created[0].id]


@pytest.mark.parametrize("search", ["%", "_", "'; DROP TABLE auth.users; --", "\\", "%%_'\""])
async def test_search_with_sql_metacharacters_is_just_text(auth: AuthServer, search: str) -> None:
    """Search text with SQL and LIKE metacharacters matches literally and breaks nothing."""
    admin = await auth.admin()
    name = f"odd {uuid.uuid4().hex[:6]} {search} name"
    odd = await auth.register(name=name)
    response = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(search=search, page_size=1000), metadata=admin.metadata
    )
    ids = {u.id for u in response.users}
    assert odd.id in ids
    assert all(search.lower() in (u.email + u.display_name).lower() for u in response.users)


async def test_list_users_bad_paging(auth: AuthServer) -> None:
    """A negative page_size, a garbage page_token, or a token reused with another search:
    INVALID_ARGUMENT naming the field. A page_size over 1000 is coerced to 1000 (AIP-158)."""
    admin = await auth.admin()
    await auth.register()
    await auth.register()
    coerced = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(page_size=1001), metadata=admin.metadata
    )
    assert len(coerced.users) >= 3
    for request, field in [
        (auth_pb2.ListUsersRequest(page_size=-1), "page_size"),
        (auth_pb2.ListUsersRequest(page_token="garbage"), "page_token"),
        (auth_pb2.ListUsersRequest(page_token="eyJ0IjogMX0"), "page_token"),
    ]:
        error = await refused(auth.stub.ListUsers(request, metadata=admin.metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (error.details() or "")
    first = await auth.stub.ListUsers(
        auth_pb2.ListUsersRequest(page_size=1), metadata=admin.metadata
    )
    assert first.next_page_token
    error = await refused(
        auth.stub.ListUsers(
            auth_pb2.ListUsersRequest(page_token=first.next_page_token, search="other"),
            metadata=admin.metadata,
        )
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_get_user(auth: AuthServer) -> None:
    """GetUser returns the user; a malformed id is INVALID_ARGUMENT; an unknown one
    NOT_FOUND."""
    admin = await auth.admin()
    user = await auth.register()
    response = await auth.stub.GetUser(auth_pb2.GetUserRequest(id=user.id), metadata=admin.metadata)
    assert response.user == user
    for user_id, code in [
        ("", grpc.StatusCode.INVALID_ARGUMENT),
        ("not-a-uuid", grpc.StatusCode.INVALID_ARGUMENT),
        (str(uuid.uuid4()), grpc.StatusCode.NOT_FOUND),
    ]:
        error = await refused(
            auth.stub.GetUser(auth_pb2.GetUserRequest(id=user_id), metadata=admin.metadata)
        )
        assert error.code() == code


async def test_update_user_changes_only_the_masked_fields(auth: AuthServer) -> None:
    """UpdateUser changes exactly the fields in the mask and moves update_time."""
    admin = await auth.admin()
    user = await auth.register(name="Before")
    response = await auth.stub.UpdateUser(
        update(user.id, ["display_name"], display_name=" After ", role=2, active=False),
        metadata=admin.metadata,
    )
    assert response.user.display_name == "After"
    assert response.user.role == auth_pb2.ROLE_USER
    assert response.user.active
    assert response.user.update_time.ToDatetime() >= user.update_time.ToDatetime()
    promoted = await auth.stub.UpdateUser(
        update(user.id, ["role"], role=2), metadata=admin.metadata
    )
    assert promoted.user.role == auth_pb2.ROLE_ADMIN
    assert promoted.user.display_name == "After"


@pytest.mark.parametrize(
    ("paths", "fields", "field"),
    [
        ([], {}, "update_mask"),
        (["email"], {"email": "x@example.com"}, "update_mask"),
        (["display_name", "password_hash"], {}, "update_mask"),
        (["role"], {"role": 0}, "user.role"),
        (["role"], {"role": 7}, "user.role"),
        (["display_name"], {"display_name": ""}, "user.display_name"),
    ],
)
async def test_bad_update_user(
    auth: AuthServer, paths: list[str], fields: dict[str, object], field: str
) -> None:
    """An empty mask, a path that is not role/active/display_name, an unset or unknown role,
    an empty display name: INVALID_ARGUMENT naming the field."""
    admin = await auth.admin()
    user = await auth.register()
    error = await refused(
        auth.stub.UpdateUser(update(user.id, paths, **fields), metadata=admin.metadata)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


async def test_update_user_target_errors(auth: AuthServer) -> None:
    """Unknown user: NOT_FOUND. Malformed id: INVALID_ARGUMENT. An admin deactivating or
    demoting themselves: FAILED_PRECONDITION (nobody locks the last admin out)."""
    admin = await auth.admin()
    missing = await refused(
        auth.stub.UpdateUser(update(str(uuid.uuid4()), ["active"]), metadata=admin.metadata)
    )
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    bad = await refused(auth.stub.UpdateUser(update("nope", ["active"]), metadata=admin.metadata))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    for request in (update(admin.user.id, ["active"]), update(admin.user.id, ["role"], role=1)):
        error = await refused(auth.stub.UpdateUser(request, metadata=admin.metadata))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_deactivation_revokes_refresh_tokens_and_api_keys(auth: AuthServer) -> None:
    """Deactivating a user at once stops their refresh tokens, API keys and password
    sign-in (all UNAUTHENTICATED), while an access token already issued keeps working
    until it expires, as documented."""
    admin = await auth.admin()
    user = await auth.account()
    key = await auth.stub.CreateApiKey(
        auth_pb2.CreateApiKeyRequest(name="ci"), metadata=user.metadata
    )
    await auth.stub.UpdateUser(
        update(user.user.id, ["active"], active=False), metadata=admin.metadata
    )

    for call in (
        auth.stub.RefreshToken(
            auth_pb2.RefreshTokenRequest(refresh_token=user.tokens.refresh_token)
        ),
        auth.stub.Login(
            auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=key.secret))
        ),
        auth.login(user.email),
    ):
        assert (await refused(call)).code() == grpc.StatusCode.UNAUTHENTICATED

    me = await auth.stub.GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=user.metadata)
    assert not me.user.active
    keys = await auth.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(include_revoked=True), metadata=user.metadata
    )
    assert keys.api_keys[0].HasField("revoke_time")

    await auth.stub.UpdateUser(
        update(user.user.id, ["active"], active=True), metadata=admin.metadata
    )
    assert (await auth.login(user.email)).tokens.access_token
    error = await refused(
        auth.stub.Login(
            auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=key.secret))
        )
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED  # revoked keys stay revoked


async def test_demoted_admin_loses_admin_rpcs_at_once(auth: AuthServer) -> None:
    """The auth service re-checks an admin token's holder in the database: once demoted,
    their still-valid admin token gets PERMISSION_DENIED on admin RPCs; and their next
    refresh yields a `user` token."""
    boss = await auth.admin()
    other = await auth.admin()
    await auth.stub.UpdateUser(update(other.user.id, ["role"], role=1), metadata=boss.metadata)
    error = await refused(auth.stub.ListUsers(auth_pb2.ListUsersRequest(), metadata=other.metadata))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    refreshed = await auth.stub.RefreshToken(
        auth_pb2.RefreshTokenRequest(refresh_token=other.tokens.refresh_token)
    )
    me = await auth.stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(),
        metadata=(("authorization", f"Bearer {refreshed.tokens.access_token}"),),
    )
    assert me.user.role == auth_pb2.ROLE_USER
