"""Wires the auth service: database, token verification, gRPC server."""

from __future__ import annotations

from pathlib import Path

from auth.config import AuthConfig
from auth.servicer import AuthServicer
from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common import db, interceptors, migrations, server
from kiln.common.tokens import StaticKeySource, TokenVerifier

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA = "auth"
PUBLIC_METHODS = frozenset(
    f"/{SERVICE_NAME}/{rpc}" for rpc in ("Register", "Login", "RefreshToken", "GetJwks"))


def migrate(config: AuthConfig) -> None:
    """Brings the `auth` schema up to date."""
    migrations.upgrade(MIGRATIONS, config.database_url, SCHEMA)


async def serve(config: AuthConfig) -> None:
    """Runs the auth service until SIGTERM."""
    engine = db.create_engine(config, application_name="auth")
    await migrations.ensure_current(engine, MIGRATIONS, SCHEMA, "auth")
    verifier = TokenVerifier(StaticKeySource({}), config.jwt_issuer, config.jwt_audience,
                             config.jwt_leeway)
    servicer = AuthServicer()
    host = server.ServiceHost(
        config,
        [server.GrpcService(
            SERVICE_NAME, lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, s))],
        interceptors=interceptors.standard_interceptors(verifier, PUBLIC_METHODS),
        dependencies=[server.Dependency("postgresql", lambda: db.ping(engine))],
    )
    await server.serve_until_stopped(host, [engine.dispose])
