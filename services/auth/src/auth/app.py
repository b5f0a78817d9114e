"""Wires the auth service: database, key ring, token verification, gRPC server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from pathlib import Path

import structlog

from auth import account_usecases, housekeeping, keys, validation
from auth.account_publisher import AccountPublisher
from auth.config import AuthConfig
from auth.core import Core, build_core
from auth.servicer import AuthServicer
from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import (
    db,
    errors,
    interceptors,
    migrations,
    server,
    startup,
    textlimits,
    verifiers,
)
from kiln.common.account_states import AccountStates
from kiln.common.config import ConfigError
from kiln.common.tokens import StaticKeySource

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "auth"
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{rpc}" for rpc in ("Register", "Login", "RefreshToken", "GetJwks")
)

log = structlog.get_logger("auth.app")


def migrate(config: AuthConfig) -> None:
    """Brings the `auth` schema up to date."""
    migrations.upgrade(MIGRATIONS, config.database_url, SCHEMA)


class AuthApp(server.ServiceApp):
    """The auth service's server and everything it owns, startable in-process (tests)."""

    def __init__(self, config: AuthConfig, ring: keys.KeyRing) -> None:
        self.config = config
        self.ring = ring
        self.engine = db.create_engine(config, application_name="auth")
        # Not strict: auth serves Login and its other RPCs while NATS is down; its admin
        # RPCs check the database anyway.
        self.account_states = AccountStates(strict=False)
        self.publisher = AccountPublisher(
            self.engine,
            config,
            self.account_states,
            replication=config,
            resync_interval=config.accounts_resync_interval,
        )
        self.core: Core = dataclasses.replace(
            build_core(config, self.engine, ring), account_changed=self.publisher.notify
        )
        # The auth service verifies its own tokens with every key of its ring, locally.
        verifier = verifiers.build_verifier(StaticKeySource(ring.public_keys), config)
        self.servicer = AuthServicer(self.core, ring, config.jwt_issuer, config.jwt_audience)
        self.host = server.ServiceHost(
            config,
            [server.GrpcService(SERVICE_NAME, self._register)],
            interceptors=[
                *interceptors.standard_interceptors(verifier, PUBLIC_METHODS, self.account_states),
                textlimits.TextLimitInterceptor(validation.TEXT_LIMITS),
            ],
            dependencies=[server.Dependency("postgresql", lambda: db.ping(self.engine))],
        )
        self._housekeeping: asyncio.Task[None] | None = None
        self._publishing: asyncio.Task[None] | None = None

    def _register(self, grpc_server: object) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(self.servicer, grpc_server)

    async def prepare(self) -> None:
        """Checks the schema, creates the bootstrap admin, starts housekeeping and the
        account publisher (which connects to NATS in the background, for as long as it
        takes)."""
        await migrations.ensure_current(self.engine, MIGRATIONS, SCHEMA, "auth")
        await bootstrap_admin(self.config, self.core)
        self._housekeeping = asyncio.create_task(
            housekeeping.run(self.core, self.config.housekeeping_interval), name="housekeeping"
        )
        self._publishing = asyncio.create_task(self.publisher.run(), name="account-publisher")

    async def start(self) -> int:
        """`prepare()`, then serve; returns the bound port (tests bind port 0)."""
        await self.prepare()
        return await self.host.start()

    async def close(self) -> None:
        """Stops housekeeping and publishing, closes the database pool (after the server
        stopped)."""
        for task in (self._housekeeping, self._publishing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.engine.dispose()


async def build(config: AuthConfig, ring: keys.KeyRing | None = None) -> AuthApp:
    """The auth service, ready to start; `ring` defaults to the keys the config names."""
    return AuthApp(config, keys.load_key_ring(config) if ring is None else ring)


async def bootstrap_admin(config: AuthConfig, core: Core) -> None:
    """Creates the admin named by AUTH_BOOTSTRAP_ADMIN_EMAIL unless that email exists."""
    if not config.bootstrap_admin_email:
        return
    if not config.bootstrap_admin_password:
        raise ConfigError("AUTH_BOOTSTRAP_ADMIN_PASSWORD", "is required with the email")
    try:
        created = await account_usecases.ensure_admin(
            core,
            config.bootstrap_admin_email,
            config.bootstrap_admin_password,
            config.bootstrap_admin_name,
        )
    except errors.InvalidArgument as exc:
        variable = {
            "email": "AUTH_BOOTSTRAP_ADMIN_EMAIL",
            "password": "AUTH_BOOTSTRAP_ADMIN_PASSWORD",
        }
        field = exc.violations[0].field
        raise ConfigError(
            variable.get(field, "AUTH_BOOTSTRAP_ADMIN_NAME"), exc.violations[0].description
        ) from None
    if created is not None:
        log.info("bootstrap_admin_created", user_id=str(created.id))


def load_ring_or_exit(config: AuthConfig) -> keys.KeyRing:
    """The key ring; a bad key setting prints its variable and exits 2, like bad config."""
    try:
        return keys.load_key_ring(config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def serve(config: AuthConfig) -> None:
    """Runs the auth service until SIGTERM (after waiting for the schema, if it is old)."""
    ring = load_ring_or_exit(config)  # a bad key is reported before the database is asked
    await startup.wait_for_schema(config, config, MIGRATIONS, SCHEMA, "auth")
    try:
        await server.serve_app(await build(config, ring))
    except ConfigError as exc:  # the bootstrap admin's settings
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
