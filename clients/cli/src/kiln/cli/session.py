"""Where the CLI connects and who it is: targets, stored tokens, automatic refresh.

Tokens from `kiln login` are kept in `$XDG_CONFIG_HOME/kiln/credentials.json` (default
`~/.config/kiln`), readable by the user only. Before a call, an access token that expires
within a minute is refreshed with the stored refresh token. `KILN_TOKEN` (an access token)
or `KILN_API_KEY` (exchanged at every run) take precedence, for scripts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import grpc

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.cli.errors import CliError
from kiln.cli.transport import Transport

DEFAULT_AUTH_TARGET = "127.0.0.1:50051"
DEFAULT_TASKS_TARGET = "127.0.0.1:50052"
_REFRESH_MARGIN = 60.0


def credentials_path() -> Path:
    """The file holding the stored tokens."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "kiln" / "credentials.json"


@dataclasses.dataclass
class Credentials:
    """What `kiln login` stores."""

    access_token: str
    access_expires_at: float
    refresh_token: str
    auth_target: str
    email: str = ""

    def save(self) -> None:
        """Writes the file with mode 0600 (created that way, never widened)."""
        path = credentials_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(dataclasses.asdict(self), handle)

    @classmethod
    def load(cls) -> Credentials | None:
        """The stored credentials, or None."""
        path = credentials_path()
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return cls(**data)


@dataclasses.dataclass
class Session:
    """Targets and the means to get a valid access token."""

    tasks_target: str
    auth_target: str
    transport: Transport = dataclasses.field(default_factory=Transport)

    def channel(self, target: str) -> grpc.Channel:
        """A channel to `target`, plaintext or TLS as the transport options say."""
        return self.transport.channel(target)

    def auth_stub(self) -> Any:
        """A stub for AuthService."""
        return auth_pb2_grpc.AuthServiceStub(self.channel(self.auth_target))

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The `authorization` metadata for an authenticated call."""
        return (("authorization", f"Bearer {self.access_token()}"),)

    def access_token(self) -> str:
        """A token valid for at least a minute, refreshing or exchanging as needed."""
        if token := os.environ.get("KILN_TOKEN"):
            return token
        if api_key := os.environ.get("KILN_API_KEY"):
            response = self.auth_stub().Login(
                auth_pb2.LoginRequest(api_key=auth_pb2.ApiKeyCredential(api_key=api_key)),
                timeout=30,
            )
            return str(response.tokens.access_token)
        stored = Credentials.load()
        if stored is None:
            raise CliError("not logged in: run `kiln login` (or set KILN_TOKEN / KILN_API_KEY)")
        if stored.access_expires_at - time.time() > _REFRESH_MARGIN:
            return stored.access_token
        if not stored.refresh_token:
            raise CliError("the session expired: run `kiln login` again")
        try:
            response = auth_pb2_grpc.AuthServiceStub(self.channel(stored.auth_target)).RefreshToken(
                auth_pb2.RefreshTokenRequest(refresh_token=stored.refresh_token), timeout=30
            )
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise CliError("the session expired: run `kiln login` again") from None
            raise
        store_tokens(response.tokens, stored.auth_target, stored.email)
        return str(response.tokens.access_token)


def store_tokens(tokens: auth_pb2.TokenPair, auth_target: str, email: str) -> None:
    """Keeps a token pair for later commands."""
    Credentials(
        access_token=tokens.access_token,
        access_expires_at=float(tokens.access_token_expire_time.seconds)
        if tokens.HasField("access_token_expire_time")
        else time.time() + 300,
        refresh_token=tokens.refresh_token,
        auth_target=auth_target,
        email=email,
    ).save()
