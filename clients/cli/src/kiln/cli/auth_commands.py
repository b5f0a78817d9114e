"""`kiln login`, `logout`, `whoami`, `users ...` and `api-keys ...`."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import getpass
import sys

from google.protobuf import field_mask_pb2

from kiln.auth.v1 import auth_pb2
from kiln.cli import output
from kiln.cli.errors import CliError
from kiln.cli.session import Credentials, Session, credentials_path, store_tokens

ROLES = {"user": auth_pb2.ROLE_USER, "admin": auth_pb2.ROLE_ADMIN}


def _secret(prompt: str, from_stdin: bool, what: str = "password") -> str:
    """A secret from stdin (--password-stdin), else asked for on the terminal.

    Without a terminal there is nobody to ask: a clear error says how to pass it instead
    of sending an empty secret to the server.
    """
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            raise CliError(f"no {what} on stdin", 2)
        return secret
    if not sys.stdin.isatty():
        raise CliError(
            f"no terminal to ask for the {what}: pipe it in with --password-stdin, "
            "e.g. `kiln login --email ME --password-stdin < file`",
            2,
        )
    return getpass.getpass(prompt)


def _email(given: str | None) -> str:
    """The --email, else asked for on the terminal."""
    if given:
        return given
    if not sys.stdin.isatty():
        raise CliError("no terminal to ask for the email: give --email", 2)
    return input("Email: ")


def register(session: Session, args: argparse.Namespace) -> None:
    """Creates an account (then `kiln login`)."""
    email = _email(args.email)
    password = _secret("Password (12+ characters): ", args.password_stdin)
    user = (
        session.auth_stub()
        .Register(
            auth_pb2.RegisterRequest(
                email=email, password=password, display_name=args.name or email.split("@")[0]
            ),
            timeout=30,
        )
        .user
    )
    output.show(
        args.output_format,
        user,
        lambda: print(f"registered {user.email}; now run `kiln login --email {user.email}`"),
    )


def login(session: Session, args: argparse.Namespace) -> None:
    """Signs in with email + password (or an API key) and stores the tokens."""
    if args.api_key_stdin:
        credential = auth_pb2.LoginRequest(
            api_key=auth_pb2.ApiKeyCredential(api_key=_secret("API key: ", True, "API key"))
        )
    else:
        email = _email(args.email)
        password = _secret("Password: ", args.password_stdin)
        credential = auth_pb2.LoginRequest(
            password=auth_pb2.PasswordCredential(email=email, password=password)
        )
    response = session.auth_stub().Login(credential, timeout=30)
    store_tokens(response.tokens, session.auth_target, response.user.email)
    role = output.enum_name(auth_pb2.Role.Name(response.user.role))
    output.show(
        args.output_format,
        response.user,
        lambda: print(f"logged in as {response.user.email} ({role})"),
    )


def logout(session: Session, args: argparse.Namespace) -> None:
    """Revokes the stored refresh token (or, with --everywhere, every session of the
    account) and forgets the tokens."""
    stored = Credentials.load()
    if args.everywhere:
        # Must reach the server: the user asked for the other sessions to end.
        session.auth_stub().Logout(
            auth_pb2.LogoutRequest(all_sessions=True), metadata=session.metadata(), timeout=10
        )
    elif stored and stored.refresh_token:
        with contextlib.suppress(Exception):  # the local logout happens regardless
            session.auth_stub().Logout(
                auth_pb2.LogoutRequest(refresh_token=stored.refresh_token),
                metadata=session.metadata(),
                timeout=10,
            )
    credentials_path().unlink(missing_ok=True)
    print("logged out everywhere" if args.everywhere else "logged out")


def whoami(session: Session, args: argparse.Namespace) -> None:
    """Shows the signed-in user."""
    user = (
        session.auth_stub()
        .GetCurrentUser(auth_pb2.GetCurrentUserRequest(), metadata=session.metadata(), timeout=30)
        .user
    )
    _show_users([user], args.output_format, single=True)


def _show_users(users: list[auth_pb2.User], fmt: str, single: bool = False) -> None:
    if fmt != "table":
        data = output.as_dict(users[0]) if single else [output.as_dict(u) for u in users]
        output.show(fmt, data, lambda: None)
        return
    output.print_table(
        ["ID", "EMAIL", "NAME", "ROLE", "ACTIVE"],
        [
            (u.id, u.email, u.display_name, output.enum_name(auth_pb2.Role.Name(u.role)), u.active)
            for u in users
        ],
    )


def users_list(session: Session, args: argparse.Namespace) -> None:
    """Lists users (admin)."""
    found: list[auth_pb2.User] = []
    token = ""
    while True:
        response = session.auth_stub().ListUsers(
            auth_pb2.ListUsersRequest(page_size=200, page_token=token, search=args.search or ""),
            metadata=session.metadata(),
            timeout=30,
        )
        found.extend(response.users)
        token = response.next_page_token
        if not token or len(found) >= args.limit:
            break
    _show_users(found[: args.limit], args.output_format)


def users_get(session: Session, args: argparse.Namespace) -> None:
    """Shows one user (admin)."""
    user = (
        session.auth_stub()
        .GetUser(auth_pb2.GetUserRequest(id=args.user_id), metadata=session.metadata(), timeout=30)
        .user
    )
    _show_users([user], args.output_format, single=True)


def users_create(session: Session, args: argparse.Namespace) -> None:
    """Creates an account with a role (admin); works when self-registration is closed."""
    password = _secret("Initial password (12+ characters): ", args.password_stdin)
    user = (
        session.auth_stub()
        .CreateUser(
            auth_pb2.CreateUserRequest(
                email=args.email,
                password=password,
                display_name=args.name or args.email.split("@")[0],
                role=ROLES[args.role],
            ),
            metadata=session.metadata(),
            timeout=30,
        )
        .user
    )
    _show_users([user], args.output_format, single=True)


def users_update(session: Session, args: argparse.Namespace) -> None:
    """Changes role, active flag or display name (admin)."""
    user = auth_pb2.User(id=args.user_id)
    paths = []
    if args.role:
        user.role = ROLES[args.role]
        paths.append("role")
    if args.active is not None:
        user.active = args.active == "true"
        paths.append("active")
    if args.name is not None:
        user.display_name = args.name
        paths.append("display_name")
    if not paths:
        raise CliError("nothing to change: give --role, --active or --name", exit_code=2)
    updated = (
        session.auth_stub()
        .UpdateUser(
            auth_pb2.UpdateUserRequest(
                user=user, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            metadata=session.metadata(),
            timeout=30,
        )
        .user
    )
    _show_users([updated], args.output_format, single=True)


def api_keys_create(session: Session, args: argparse.Namespace) -> None:
    """Creates an API key and prints its secret once."""
    request = auth_pb2.CreateApiKeyRequest(
        name=args.name, role=ROLES[args.role], user_id=args.user_id or ""
    )
    if args.expires_in_days:
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=args.expires_in_days)
        request.expire_time.FromDatetime(expiry)
    response = session.auth_stub().CreateApiKey(request, metadata=session.metadata(), timeout=30)
    if args.output_format != "table":
        output.show(args.output_format, response, lambda: None)
    else:
        print(f"created API key {response.api_key.id} ({response.api_key.name})")
        print(f"secret (shown once, store it now): {response.secret}")


def api_keys_list(session: Session, args: argparse.Namespace) -> None:
    """Lists API keys (metadata only)."""
    response = session.auth_stub().ListApiKeys(
        auth_pb2.ListApiKeysRequest(page_size=1000, include_revoked=args.all),
        metadata=session.metadata(),
        timeout=30,
    )
    if args.output_format != "table":
        output.show(
            args.output_format, [output.as_dict(k) for k in response.api_keys], lambda: None
        )
        return
    output.print_table(
        ["ID", "NAME", "PREFIX", "ROLE", "USER", "REVOKED"],
        [
            (
                k.id,
                k.name,
                k.prefix,
                output.enum_name(auth_pb2.Role.Name(k.role)),
                k.user_id,
                k.HasField("revoke_time"),
            )
            for k in response.api_keys
        ],
    )


def api_keys_revoke(session: Session, args: argparse.Namespace) -> None:
    """Revokes an API key."""
    session.auth_stub().RevokeApiKey(
        auth_pb2.RevokeApiKeyRequest(id=args.key_id), metadata=session.metadata(), timeout=30
    )
    print(f"revoked API key {args.key_id}")
