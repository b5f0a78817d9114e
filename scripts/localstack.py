"""`make run`: NATS JetStream, PostgreSQL and every Kiln service on this machine.

Starts nats-server and PostgreSQL from the pip-installed binaries (data in `.data/`, kept
between runs) unless NATS_URL / DATABASE_URL name servers to use, applies migrations,
starts auth, tasks and one imagegen worker (serving every queue), waits until all report
SERVING, prints how to reach them, and on Ctrl-C stops everything it started.

Ports are never checked here and then bound by someone else: each service binds its
preferred port itself, or a free one when that is taken (GRPC_PORT_FALLBACK), and writes the
port it got to a file (GRPC_PORT_FILE). Only that port, of a child still alive, is probed and
reported, so a server another program runs on a preferred port is never shown as ours.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from kiln.common import bus
from kiln.common.testing import NatsServer, PostgresServer
from kiln.common.testing.services import ServiceProcess, migrate

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
GRPCURL = Path(sys.executable).with_name("grpcurl")
# Preferred ports, taken when free so recipes in the README work as written.
PORTS = {"auth": 50051, "tasks": 50052, "imagegen": 50053}
SERVICES = [
    ("auth", "auth", ["serve"]),
    ("tasks", "tasks", ["serve"]),
    ("imagegen", "imagegen", []),
]
# The local worker serves every queue, so a task on any queue runs (in production each queue
# has workers of its own).
WORKER_ENV = {"WORKER_QUEUES": ",".join(bus.QUEUES)}


def say(message: str) -> None:
    print(f"[kiln] {message}", flush=True)


def _traversable_by_others(path: Path) -> bool:
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.exists())


def postgres_home() -> Path:
    """Where the local cluster lives. PostgreSQL runs as an unprivileged account when we
    are root, and that account must be able to reach its data folder."""
    preferred = DATA / "postgres"
    if os.geteuid() != 0 or _traversable_by_others(DATA.parent):
        return preferred
    digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    fallback = Path(tempfile.gettempdir()) / f"kiln-localstack-{digest}" / "postgres"
    fallback.parent.mkdir(parents=True, exist_ok=True)
    fallback.parent.chmod(0o755)
    say(f"{ROOT} is private to root, so PostgreSQL keeps its data in {fallback}")
    return fallback


def ensure_database(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def start_services(env: dict[str, str], logs: Path) -> list[ServiceProcess]:
    """Starts every service, auth first (the others need its address), each on its
    preferred port or a free one; returns them once all are SERVING. AssertionError, with
    the log tail, when one exits or does not get there."""
    processes: list[ServiceProcess] = []
    try:
        for name, module, args in SERVICES:
            process = ServiceProcess(
                module,
                {**env, **WORKER_ENV} if module == "imagegen" else env,
                args,
                port=PORTS[name],
                name=name,
                log_path=logs / f"{name}.log",
                learn_port=True,
            )
            processes.append(process)
            process.start(wait=False)
            if name == "auth":
                env = {**env, "AUTH_TARGET": f"127.0.0.1:{process.wait_port(timeout=60)}"}
        for process in processes:
            process.wait_serving(timeout=60)
            if process.port != PORTS[process.name]:
                say(f"{process.name}: port {PORTS[process.name]} is taken; using {process.port}")
    except BaseException:
        for process in processes:
            process.close()
        raise
    return processes


def main() -> int:
    DATA.mkdir(exist_ok=True)
    (DATA / "logs").mkdir(exist_ok=True)
    stop_requested = False

    def request_stop(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NATS_URL", "")
        if not nats_url:
            nats = stack.enter_context(NatsServer(directory=DATA / "nats"))
            nats_url = nats.url  # the services get their own roles' credentials from it
            say(f"nats-server (JetStream) on {nats.anonymous_url}, data in {DATA / 'nats'}")
            say(f"  authorization on; development credentials in {DATA / 'nats' / 'nats.conf'}")
        database_url = os.environ.get("DATABASE_URL", "")
        if not database_url:
            postgres = stack.enter_context(PostgresServer(directory=postgres_home()))
            database_url = ensure_database(postgres.url, "kiln")
            say(f"PostgreSQL on 127.0.0.1:{postgres.port}, database `kiln`")

        env = {
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "AUTH_KEY_DIR": str(DATA / "auth-keys"),
            "LOG_FORMAT": "json",
        }
        for module in ("auth", "tasks"):
            migrate(module, env)
        say("migrations applied")

        try:
            processes = start_services(env, DATA / "logs")
        except AssertionError as failure:
            say(f"a service did not start; stopping:\n{failure}")
            return 1
        for process in processes:
            stack.callback(process.close)

        say("all services are SERVING:")
        for process in processes:
            say(
                f"  {process.name:<9} {process.target:<16} "
                f"metrics: http://127.0.0.1:{process.metrics_port}/metrics  "
                f"logs: {process.log_path.relative_to(ROOT)}"
            )
        say("for the kiln CLI, kiln-admin, make migrate and create-admin, paste:")
        say(f"  export KILN_AUTH_TARGET={processes[0].target} KILN_TARGET={processes[1].target}")
        say(f"  export DATABASE_URL={database_url}")
        say("try:")
        say(f"  {GRPCURL} -plaintext {processes[1].target} list")
        say(f"  {GRPCURL} -plaintext {processes[1].target} grpc.health.v1.Health/Check")
        say("press Ctrl-C to stop everything")

        while not stop_requested:
            for process in processes:
                if process.process is not None and process.process.poll() is not None:
                    say(
                        f"{process.name} exited with {process.process.returncode}; stopping:\n"
                        f"{process.log_tail()}"
                    )
                    return 1
            time.sleep(0.5)
        say("stopping...")
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
