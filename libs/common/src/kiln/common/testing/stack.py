"""A whole Kiln on this machine for cross-service tests, fault tests and benchmarks: auth,
tasks and imagegen workers as real processes on a given NATS and database."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from pathlib import Path

import grpc

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc
from kiln.common.testing.services import ServiceProcess, migrate

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 123"  # noqa: S105 - a throwaway test account
USER_PASSWORD = "correct horse battery"  # noqa: S105 - a throwaway test account


@dataclasses.dataclass
class KilnStack:
    """auth + tasks + workers; `env` is what every process got."""

    env: dict[str, str]
    auth: ServiceProcess
    tasks: ServiceProcess
    workers: list[ServiceProcess]

    @classmethod
    def start(
        cls,
        nats_url: str,
        database_url: str,
        data_dir: Path,
        *,
        worker_env: Mapping[str, str] | None = None,
        workers: int = 1,
        extra_env: Mapping[str, str] | None = None,
    ) -> KilnStack:
        """Migrates, starts auth, then tasks and `workers` worker processes, and waits
        until all are SERVING. Cheap argon2 settings: tests and benchmarks sign in often."""
        env = {
            "NATS_URL": nats_url, "DATABASE_URL": database_url,
            "AUTH_KEY_DIR": str(data_dir / "keys"), "AUTH_ARGON2_MEMORY_KIB": "8192",
            "AUTH_ARGON2_TIME_COST": "1", "HEALTH_PROBE_INTERVAL_SECONDS": "0.5",
            "AUTH_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
            "AUTH_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS": "100000",
            "AUTH_REGISTER_MAX_PER_ADDRESS": "100000", "AUTH_REGISTER_MAX_WAITING": "10000",
            **(extra_env or {}),
        }  # fmt: skip
        migrate("auth", env)
        migrate("tasks", env)
        auth = ServiceProcess("auth", env).start()
        env["AUTH_TARGET"] = auth.target
        tasks = ServiceProcess("tasks", env)
        pool = [
            ServiceProcess("imagegen", {**env, **(worker_env or {})}, name=f"imagegen-{i}")
            for i in range(workers)
        ]
        stack = cls(env=env, auth=auth, tasks=tasks, workers=pool)
        try:
            for process in (tasks, *pool):
                process.start(wait=False)
            for process in (tasks, *pool):
                process.wait_serving()
        except BaseException:
            stack.close()
            raise
        return stack

    def add_worker(self, env: Mapping[str, str] | None = None) -> ServiceProcess:
        """Starts one more worker process."""
        worker = ServiceProcess(
            "imagegen", {**self.env, **(env or {})}, name=f"imagegen-{len(self.workers)}"
        )
        self.workers.append(worker)
        return worker.start()

    def token(self, email: str | None = None, password: str = USER_PASSWORD) -> str:
        """Registers a fresh user (unless `email` is the admin) and returns a token."""
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        with grpc.insecure_channel(self.auth.target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            if email != ADMIN_EMAIL:
                stub.Register(
                    auth_pb2.RegisterRequest(
                        email=email, password=password, display_name=email.split("@")[0]
                    )
                )
            response = stub.Login(
                auth_pb2.LoginRequest(
                    password=auth_pb2.PasswordCredential(email=email, password=password)
                )
            )
        return str(response.tokens.access_token)

    def admin_token(self) -> str:
        """A token of the bootstrap admin."""
        return self.token(ADMIN_EMAIL, ADMIN_PASSWORD)

    def close(self) -> None:
        """Stops every process, workers first."""
        for process in (*self.workers, self.tasks, self.auth):
            process.close()
