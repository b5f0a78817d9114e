"""gRPC adapter of the auth service: proto <-> domain, nothing else."""

from __future__ import annotations

import datetime
import json
from typing import Any

from google.protobuf import timestamp_pb2

from auth import account_usecases, apikey_usecases, session_usecases
from auth.core import Core
from auth.keys import KeyRing
from auth.models import ApiKey, TokenPair, User
from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import errors, principal
from kiln.common.principal import Role
from kiln.common.timestamps import timestamp

Context = Any  # grpc.aio.ServicerContext; grpc ships no annotations

_ROLE_TO_PROTO: dict[Role, auth_pb2.Role] = {
    Role.USER: auth_pb2.ROLE_USER,
    Role.ADMIN: auth_pb2.ROLE_ADMIN,
}
_ROLE_FROM_PROTO: dict[int, Role] = {number: role for role, number in _ROLE_TO_PROTO.items()}
_MASKABLE = ("display_name", "role", "active")


def _user(user: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=str(user.id),
        email=user.email,
        display_name=user.display_name,
        role=_ROLE_TO_PROTO[user.role],
        active=user.active,
        create_time=timestamp(user.create_time),
        update_time=timestamp(user.update_time),
    )


def _api_key(key: ApiKey) -> auth_pb2.ApiKey:
    return auth_pb2.ApiKey(
        id=str(key.id),
        name=key.name,
        prefix=key.prefix,
        role=_ROLE_TO_PROTO[key.role],
        user_id=str(key.user_id),
        create_time=timestamp(key.create_time),
        expire_time=timestamp(key.expire_time),
        revoke_time=timestamp(key.revoke_time),
        last_used_time=timestamp(key.last_used_time),
    )


def _tokens(pair: TokenPair) -> auth_pb2.TokenPair:
    return auth_pb2.TokenPair(
        access_token=pair.access_token,
        access_token_expire_time=timestamp(pair.access_token_expire_time),
        refresh_token=pair.refresh_token or "",
        refresh_token_expire_time=timestamp(pair.refresh_token_expire_time),
        token_type="Bearer",  # noqa: S106 - the scheme name, not a secret
    )


def _role(field: str, value: int, *, optional: bool) -> Role | None:
    if value == auth_pb2.ROLE_UNSPECIFIED and optional:
        return None
    role = _ROLE_FROM_PROTO.get(value)
    if role is None:
        raise errors.InvalidArgument.field(field, "must be ROLE_USER or ROLE_ADMIN")
    return role


def _datetime(field: str, stamp: timestamp_pb2.Timestamp) -> datetime.datetime:
    try:
        return stamp.ToDatetime(tzinfo=datetime.UTC)
    except (ValueError, OverflowError):
        raise errors.InvalidArgument.field(field, "is not a valid time") from None


def client_address(peer: str) -> str | None:
    """The IP address in a grpc peer string (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]")
    return None


def user_changes(request: auth_pb2.UpdateUserRequest) -> account_usecases.UserChanges:
    """The changes an UpdateUser request asks for, by its field mask."""
    paths = list(request.update_mask.paths)
    if not paths:
        raise errors.InvalidArgument.field(
            "update_mask", f"is required: name any of {', '.join(_MASKABLE)}"
        )
    if paths == ["*"]:
        paths = list(_MASKABLE)
    unknown = [path for path in paths if path not in _MASKABLE]
    if unknown:
        raise errors.InvalidArgument.field(
            "update_mask",
            f"cannot change {', '.join(unknown)}; only {', '.join(_MASKABLE)}",
        )
    user = request.user
    return account_usecases.UserChanges(
        display_name=user.display_name if "display_name" in paths else None,
        role=_role("user.role", user.role, optional=False) if "role" in paths else None,
        active=user.active if "active" in paths else None,
    )


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    """AuthService over the auth core and the key ring."""

    def __init__(self, core: Core, ring: KeyRing, issuer: str, audience: str) -> None:
        self._core = core
        self._jwks = auth_pb2.GetJwksResponse(
            jwks_json=json.dumps(ring.jwks()), issuer=issuer, audience=audience
        )

    async def Register(
        self, request: auth_pb2.RegisterRequest, context: Context
    ) -> auth_pb2.RegisterResponse:
        user = await account_usecases.register(
            self._core,
            request.email,
            request.password,
            request.display_name,
            client_address(context.peer()),
        )
        return auth_pb2.RegisterResponse(user=_user(user))

    async def Login(
        self, request: auth_pb2.LoginRequest, context: Context
    ) -> auth_pb2.LoginResponse:
        address = client_address(context.peer())
        kind = request.WhichOneof("credential")
        if kind == "password":
            pair, user = await session_usecases.login_with_password(
                self._core, request.password.email, request.password.password, address
            )
        elif kind == "api_key":
            pair, user = await session_usecases.login_with_api_key(
                self._core, request.api_key.api_key, address
            )
        else:
            raise errors.InvalidArgument.field("credential", "set either password or api_key")
        return auth_pb2.LoginResponse(tokens=_tokens(pair), user=_user(user))

    async def RefreshToken(
        self, request: auth_pb2.RefreshTokenRequest, context: Context
    ) -> auth_pb2.RefreshTokenResponse:
        pair = await session_usecases.rotate(self._core, request.refresh_token)
        return auth_pb2.RefreshTokenResponse(tokens=_tokens(pair))

    async def Logout(
        self, request: auth_pb2.LogoutRequest, context: Context
    ) -> auth_pb2.LogoutResponse:
        await session_usecases.logout(
            self._core, principal.current(), request.refresh_token, request.all_sessions
        )
        return auth_pb2.LogoutResponse()

    async def GetCurrentUser(
        self, request: auth_pb2.GetCurrentUserRequest, context: Context
    ) -> auth_pb2.GetCurrentUserResponse:
        user = await account_usecases.current_user(self._core, principal.current())
        return auth_pb2.GetCurrentUserResponse(user=_user(user))

    async def ChangePassword(
        self, request: auth_pb2.ChangePasswordRequest, context: Context
    ) -> auth_pb2.ChangePasswordResponse:
        await session_usecases.change_password(
            self._core, principal.current(), request.old_password, request.new_password
        )
        return auth_pb2.ChangePasswordResponse()

    async def CreateApiKey(
        self, request: auth_pb2.CreateApiKeyRequest, context: Context
    ) -> auth_pb2.CreateApiKeyResponse:
        expire_time = (
            _datetime("expire_time", request.expire_time)
            if request.HasField("expire_time")
            else None
        )
        api_key, secret = await apikey_usecases.create(
            self._core,
            request.name,
            _role("role", request.role, optional=True),
            expire_time,
            request.user_id,
        )
        return auth_pb2.CreateApiKeyResponse(api_key=_api_key(api_key), secret=secret)

    async def ListApiKeys(
        self, request: auth_pb2.ListApiKeysRequest, context: Context
    ) -> auth_pb2.ListApiKeysResponse:
        page = await apikey_usecases.list_keys(
            self._core, request.page_size, request.page_token, request.include_revoked
        )
        return auth_pb2.ListApiKeysResponse(
            api_keys=[_api_key(k) for k in page.items], next_page_token=page.next_page_token
        )

    async def RevokeApiKey(
        self, request: auth_pb2.RevokeApiKeyRequest, context: Context
    ) -> auth_pb2.RevokeApiKeyResponse:
        api_key = await apikey_usecases.revoke(self._core, request.id)
        return auth_pb2.RevokeApiKeyResponse(api_key=_api_key(api_key))

    async def ListUsers(
        self, request: auth_pb2.ListUsersRequest, context: Context
    ) -> auth_pb2.ListUsersResponse:
        page = await account_usecases.list_users(
            self._core, request.page_size, request.page_token, request.search
        )
        return auth_pb2.ListUsersResponse(
            users=[_user(u) for u in page.items], next_page_token=page.next_page_token
        )

    async def GetUser(
        self, request: auth_pb2.GetUserRequest, context: Context
    ) -> auth_pb2.GetUserResponse:
        user = await account_usecases.get_user(self._core, request.id)
        return auth_pb2.GetUserResponse(user=_user(user))

    async def UpdateUser(
        self, request: auth_pb2.UpdateUserRequest, context: Context
    ) -> auth_pb2.UpdateUserResponse:
        await account_usecases.require_admin(self._core)  # before any field check reveals anything
        user = await account_usecases.update_user(
            self._core, request.user.id, user_changes(request)
        )
        return auth_pb2.UpdateUserResponse(user=_user(user))

    async def CreateUser(
        self, request: auth_pb2.CreateUserRequest, context: Context
    ) -> auth_pb2.CreateUserResponse:
        await account_usecases.require_admin(self._core)  # before any field check reveals anything
        user = await account_usecases.create_user(
            self._core,
            request.email,
            request.password,
            request.display_name,
            _role("role", request.role, optional=True),
        )
        return auth_pb2.CreateUserResponse(user=_user(user))

    async def GetJwks(
        self, request: auth_pb2.GetJwksRequest, context: Context
    ) -> auth_pb2.GetJwksResponse:
        return self._jwks
