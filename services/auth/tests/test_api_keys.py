"""API keys: CreateApiKey, ListApiKeys, RevokeApiKey and the exchange through Login."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import uuid

import grpc
import jwt
import pytest
import sqlalchemy as sa
from google.protobuf import field_mask_pb2, timestamp_pb2

from auth.tables import api_keys
from auth.testing import SIGNING_KEY, Account, AuthServer, bearer
from kiln.auth.v1 import auth_pb2


async def refused(call: object) -> grpc.aio.AioRpcError:
    """The error a call ended with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


def key_login(secret: str) -> auth_pb2.LoginRequest:
    return auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=secret))


def in_seconds(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds))
    return stamp


async def create(
    auth: AuthServer, owner: Account, **fields: object
) -> auth_pb2.CreateApiKeyResponse:
    request = auth_pb2.CreateApiKeyRequest(name=str(fields.pop("name", "ci")), **fields)  # type: ignore[arg-type]
    response: auth_pb2.CreateApiKeyResponse = await auth.stub.CreateApiKey(
        request, metadata=owner.metadata
    )
    return response


async def test_create_returns_the_secret_once_and_stores_only_its_hash(auth: AuthServer) -> None:
    """CreateApiKey returns `kiln_<prefix>_<secret>` once; the database keeps its SHA-256
    and the prefix, never the secret; ListApiKeys shows metadata only."""
    owner = await auth.account()
    created = await create(auth, owner, name="deploy bot")
    key = created.api_key
    assert created.secret.startswith(f"kiln_{key.prefix}_")
    assert len(created.secret.split("_", 2)[2]) >= 43
    assert (key.name, key.role, key.user_id) == ("deploy bot", auth_pb2.ROLE_USER, owner.user.id)
    assert not key.HasField("revoke_time") and not key.HasField("expire_time")

    async with auth.app.engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(api_keys).where(api_keys.c.id == uuid.UUID(key.id))))
            .mappings()
            .one()
        )
    assert row["secret_hash"] == hashlib.sha256(created.secret.encode()).digest()
    assert created.secret not in str(dict(row))

    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=owner.metadata)
    assert [k.id for k in listed.api_keys] == [key.id]
    assert created.secret.encode() not in listed.SerializeToString()


async def test_api_key_is_exchanged_for_a_short_lived_token(auth: AuthServer) -> None:
    """Login with an API key returns an access token (no refresh token) for the key's user
    and role, which other RPCs accept; the key's last_used_time is set."""
    owner = await auth.account()
    created = await create(auth, owner)
    response = await auth.stub.Login(key_login(created.secret))
    assert response.tokens.access_token
    assert response.tokens.refresh_token == ""
    assert not response.tokens.HasField("refresh_token_expire_time")
    claims = jwt.decode(
        response.tokens.access_token,
        SIGNING_KEY.public_key(),
        algorithms=["EdDSA"],
        audience="kiln",
    )
    assert (claims["sub"], claims["role"]) == (owner.user.id, "user")
    me = await auth.stub.GetCurrentUser(
        auth_pb2.GetCurrentUserRequest(), metadata=bearer(response.tokens.access_token)
    )
    assert me.user.id == owner.user.id
    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=owner.metadata)
    assert listed.api_keys[0].HasField("last_used_time")


@pytest.mark.parametrize(
    "secret",
    ["kiln_00000000_nope", "kiln_abc", "not-a-key", "kiln__", "x" * 2000],
)
async def test_unknown_or_malformed_api_key_is_unauthenticated(
    auth: AuthServer, secret: str
) -> None:
    """An API key that does not exist or is not shaped like one: UNAUTHENTICATED."""
    error = await refused(auth.stub.Login(key_login(secret)))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_revoked_and_expired_keys_stop_working(auth: AuthServer) -> None:
    """A revoked key and a key past its expire_time are UNAUTHENTICATED at Login; both are
    hidden from ListApiKeys unless include_revoked is set."""
    owner = await auth.account()
    revoked = await create(auth, owner, name="old")
    expiring = await create(auth, owner, name="short", expire_time=in_seconds(1))
    kept = await create(auth, owner, name="kept")
    response = await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(id=revoked.api_key.id), metadata=owner.metadata
    )
    assert response.api_key.HasField("revoke_time")
    again = await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(id=revoked.api_key.id), metadata=owner.metadata
    )
    assert again.api_key.revoke_time == response.api_key.revoke_time
    await asyncio.sleep(1.1)
    for secret in (revoked.secret, expiring.secret):
        error = await refused(auth.stub.Login(key_login(secret)))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    live = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=owner.metadata)
    assert [k.id for k in live.api_keys] == [kept.api_key.id]
    everything = await auth.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(include_revoked=True), metadata=owner.metadata
    )
    assert len(everything.api_keys) == 3


async def test_users_manage_only_their_own_keys(auth: AuthServer) -> None:
    """A user sees only their keys; another user's key is NOT_FOUND to them (like a missing
    one) when they try to revoke it; an admin lists and revokes everyone's."""
    alice, bob = await auth.account(), await auth.account()
    admin = await auth.admin()
    alices = await create(auth, alice)
    bobs = await create(auth, bob)
    listed = await auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest(), metadata=alice.metadata)
    assert [k.id for k in listed.api_keys] == [alices.api_key.id]
    for key_id in (bobs.api_key.id, str(uuid.uuid4())):
        error = await refused(
            auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=key_id), metadata=alice.metadata)
        )
        assert error.code() == grpc.StatusCode.NOT_FOUND
    assert (await auth.stub.Login(key_login(bobs.secret))).tokens.access_token

    everyone = await auth.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(page_size=1000), metadata=admin.metadata
    )
    assert {alices.api_key.id, bobs.api_key.id} <= {k.id for k in everyone.api_keys}
    await auth.stub.RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(id=bobs.api_key.id), metadata=admin.metadata
    )
    assert (await refused(auth.stub.Login(key_login(bobs.secret)))).code() == (
        grpc.StatusCode.UNAUTHENTICATED
    )


async def test_key_roles_and_owners(auth: AuthServer) -> None:
    """Users may create only `user` keys for themselves (PERMISSION_DENIED otherwise);
    admins may create keys for others, and admin keys for admins; an admin key for a
    `user` account is INVALID_ARGUMENT; a key's token never carries more than its user's
    current role."""
    user = await auth.account()
    admin = await auth.admin()
    for fields in ({"role": auth_pb2.ROLE_ADMIN}, {"user_id": admin.user.id}):
        error = await refused(create(auth, user, **fields))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    for_user = await create(auth, admin, user_id=user.user.id)
    assert for_user.api_key.user_id == user.user.id
    error = await refused(create(auth, admin, user_id=user.user.id, role=auth_pb2.ROLE_ADMIN))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT

    other_admin = await auth.admin()
    admin_key = await create(auth, admin, user_id=other_admin.user.id, role=auth_pb2.ROLE_ADMIN)
    token = (await auth.stub.Login(key_login(admin_key.secret))).tokens.access_token
    assert jwt.decode(token, options={"verify_signature": False})["role"] == "admin"
    await auth.stub.UpdateUser(
        auth_pb2.UpdateUserRequest(
            user=auth_pb2.User(id=other_admin.user.id, role=auth_pb2.ROLE_USER),
            update_mask=field_mask_pb2.FieldMask(paths=["role"]),
        ),
        metadata=admin.metadata,
    )
    token = (await auth.stub.Login(key_login(admin_key.secret))).tokens.access_token
    assert jwt.decode(token, options={"verify_signature": False})["role"] == "user"


@pytest.mark.parametrize(
    ("fields", "code", "field"),
    [
        ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"name": "n" * 201}, grpc.StatusCode.INVALID_ARGUMENT, "name"),
        ({"expire_time": "past"}, grpc.StatusCode.INVALID_ARGUMENT, "expire_time"),
        ({"role": 9}, grpc.StatusCode.INVALID_ARGUMENT, "role"),
        ({"user_id": "not-a-uuid"}, grpc.StatusCode.INVALID_ARGUMENT, "user_id"),
        ({"user_id": "unknown"}, grpc.StatusCode.NOT_FOUND, ""),
    ],
)
async def test_bad_create_api_key(
    auth: AuthServer, fields: dict[str, object], code: grpc.StatusCode, field: str
) -> None:
    """Empty or long name, an expiry in the past, an unknown role, a malformed user id:
    INVALID_ARGUMENT naming the field; a user id nobody has: NOT_FOUND."""
    admin = await auth.admin()
    if fields.get("expire_time") == "past":
        fields["expire_time"] = in_seconds(-60)
    if fields.get("user_id") == "unknown":
        fields["user_id"] = str(uuid.uuid4())
    error = await refused(create(auth, admin, **fields))
    assert error.code() == code
    assert field in (error.details() or "")


async def test_bad_revoke_and_list_requests(auth: AuthServer) -> None:
    """RevokeApiKey with an empty or malformed id, ListApiKeys with a negative page size or
    a bad token: INVALID_ARGUMENT (a page size over 1000 is coerced). Without a token, all
    API-key RPCs are UNAUTHENTICATED."""
    owner = await auth.account()
    for key_id in ("", "nope"):
        error = await refused(
            auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=key_id), metadata=owner.metadata)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    coerced = await auth.stub.ListApiKeys(
        auth_pb2.ListApiKeysRequest(page_size=5000), metadata=owner.metadata
    )
    assert not coerced.next_page_token  # over 1000 is coerced to 1000, not refused
    for request in (
        auth_pb2.ListApiKeysRequest(page_size=-1),
        auth_pb2.ListApiKeysRequest(page_token="!!"),
    ):
        error = await refused(auth.stub.ListApiKeys(request, metadata=owner.metadata))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    for call in (
        auth.stub.CreateApiKey(auth_pb2.CreateApiKeyRequest(name="x")),
        auth.stub.ListApiKeys(auth_pb2.ListApiKeysRequest()),
        auth.stub.RevokeApiKey(auth_pb2.RevokeApiKeyRequest(id=str(uuid.uuid4()))),
    ):
        assert (await refused(call)).code() == grpc.StatusCode.UNAUTHENTICATED


async def test_list_api_keys_pages(auth: AuthServer) -> None:
    """ListApiKeys pages newest first with opaque tokens and no repeats."""
    owner = await auth.account()
    made = [(await create(auth, owner, name=f"k{i}")).api_key.id for i in range(5)]
    seen: list[str] = []
    token = ""
    while True:
        page = await auth.stub.ListApiKeys(
            auth_pb2.ListApiKeysRequest(page_size=2, page_token=token), metadata=owner.metadata
        )
        seen += [k.id for k in page.api_keys]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))
