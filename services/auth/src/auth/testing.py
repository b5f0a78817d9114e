"""Test helpers: an in-process auth server on port 0, test accounts, test config.

Used by the service's tests and by bench/bench_auth.py; nothing in the service imports it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth import account_usecases, app
from auth.config import AuthConfig
from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import config
from kiln.common.principal import Role

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test password
CHEAP_ARGON2 = {
    "AUTH_ARGON2_MEMORY_KIB": "64",
    "AUTH_ARGON2_TIME_COST": "1",
    "AUTH_ARGON2_PARALLELISM": "1",
}


def pem(key: ed25519.Ed25519PrivateKey) -> str:
    """The PKCS#8 PEM text of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key: ed25519.Ed25519PrivateKey) -> str:
    """The PEM text of a key's public half."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


SIGNING_KEY = ed25519.Ed25519PrivateKey.generate()


def make_config(database_url: str, **overrides: str) -> AuthConfig:
    """An AuthConfig for tests: port 0, cheap hashing, a fixed key, generous address limits."""
    environ = {
        "DATABASE_URL": database_url,
        # No NATS unless a test names one: port 1 refuses at once, never a stranger's server.
        "NATS_URL": "nats://127.0.0.1:1",
        "GRPC_HOST": "127.0.0.1",
        "GRPC_PORT": "0",
        "SHUTDOWN_DELAY_SECONDS": "0",
        "GRACE_PERIOD_SECONDS": "0",
        "METRICS_PORT": "-1",
        "LOG_FORMAT": "json",
        "AUTH_SIGNING_KEYS": pem(SIGNING_KEY),
        "AUTH_GENERATE_KEY": "false",
        "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "10000",
        "AUTH_REGISTER_MAX_PER_ADDRESS": "100000",
        "AUTH_REGISTER_MAX_WAITING": "10000",
        **CHEAP_ARGON2,
        **overrides,
    }
    return config.load(AuthConfig, environ=environ, env_file=None)


def new_email() -> str:
    """An email no other test uses."""
    return f"user-{uuid.uuid4().hex[:12]}@example.com"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying an access token."""
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Account:
    """A registered and signed-in user."""

    email: str
    password: str
    user: auth_pb2.User
    tokens: auth_pb2.TokenPair

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata with this account's access token."""
        return bearer(self.tokens.access_token)


@dataclass
class AuthServer:
    """A running auth server and a stub connected to it."""

    app: app.AuthApp
    channel: grpc.aio.Channel
    stub: auth_pb2_grpc.AuthServiceStub
    port: int
    accounts: list[Account] = field(default_factory=list)

    async def register(
        self, email: str | None = None, password: str = PASSWORD, name: str = "Test User"
    ) -> auth_pb2.User:
        """Registers an account and returns it."""
        response: auth_pb2.RegisterResponse = await self.stub.Register(
            auth_pb2.RegisterRequest(
                email=new_email() if email is None else email, password=password, display_name=name
            )
        )
        return response.user

    async def login(self, email: str, password: str = PASSWORD) -> auth_pb2.LoginResponse:
        """Signs in with a password."""
        response: auth_pb2.LoginResponse = await self.stub.Login(
            auth_pb2.LoginRequest(
                password=auth_pb2.PasswordCredential(email=email, password=password)
            )
        )
        return response

    async def account(self, name: str = "Test User") -> Account:
        """A fresh user, registered and signed in."""
        email = new_email()
        user = await self.register(email, name=name)
        response = await self.login(email)
        return Account(email, PASSWORD, user, response.tokens)

    async def admin(self) -> Account:
        """A fresh admin, signed in (created the way create-admin does)."""
        email = new_email()
        await account_usecases.create_account(self.app.core, email, PASSWORD, "Admin", Role.ADMIN)
        response = await self.login(email)
        return Account(email, PASSWORD, response.user, response.tokens)


async def start_server(cfg: AuthConfig) -> AuthServer:
    """Starts an auth server in this process for `cfg`."""
    auth_app = await app.build(cfg)
    port = await auth_app.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return AuthServer(auth_app, channel, auth_pb2_grpc.AuthServiceStub(channel), port)


async def stop_server(server: AuthServer) -> None:
    """Stops a server from `start_server`."""
    await server.channel.close()
    await server.app.stop()
