"""`make run` (scripts/localstack.py) reports only servers it started: with a preferred port
held by another gRPC server that answers health checks SERVING, the service it starts binds
another port, learns it from its own child, and that is the server it shows."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.services import migrate

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "localstack.py"


def load_localstack() -> ModuleType:
    """scripts/localstack.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("localstack", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def foreign_server() -> Iterator[int]:
    """Someone else's gRPC server on 127.0.0.1, healthy (SERVING); yields its port."""
    stranger = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, stranger)
    port = stranger.add_insecure_port("127.0.0.1:0")
    stranger.start()
    yield port
    stranger.stop(0)


@pytest.fixture
def auth_env(postgres_server: Any) -> Iterator[dict[str, str]]:
    """Environment for an auth process on a fresh migrated database (no NATS needed)."""
    postgres_server.ensure_running()
    name = f"auth_{uuid.uuid4().hex[:12]}"
    env = {
        "DATABASE_URL": postgres_server.create_database(name),
        "NATS_URL": "nats://127.0.0.1:1",
        "METRICS_PORT": "-1",
        "AUTH_ARGON2_MEMORY_KIB": "64",
        "AUTH_ARGON2_TIME_COST": "1",
    }
    migrate("auth", env)
    yield env
    postgres_server.drop_database(name)


def test_service_on_a_taken_port_is_never_confused_with_the_other_server(
    foreign_server: int,
    auth_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Auth's preferred port is held by a healthy stranger: localstack's auth binds another
    port, reports that one (learned from its own, live child), and that server is auth."""
    localstack = load_localstack()
    monkeypatch.setattr(localstack, "PORTS", {"auth": foreign_server})
    monkeypatch.setattr(localstack, "SERVICES", [("auth", "auth", ["serve"])])
    auth_env["AUTH_KEY_DIR"] = str(tmp_path / "keys")
    processes = localstack.start_services(auth_env, tmp_path)
    try:
        (auth,) = processes
        assert auth.port not in (0, foreign_server)
        assert auth.process is not None and auth.process.poll() is None
        with grpc.insecure_channel(auth.target) as channel:
            jwks = auth_pb2_grpc.AuthServiceStub(channel).GetJwks(
                auth_pb2.GetJwksRequest(), timeout=10
            )
        assert jwks.issuer
    finally:
        for process in processes:
            process.close()
