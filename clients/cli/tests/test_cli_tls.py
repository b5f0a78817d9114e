"""The `kiln` command over TLS: against an in-process mTLS auth server (fast), and end to
end against real auth and tasks processes serving TLS only, tasks fetching the auth
service's keys over mTLS and reaching NATS over TLS (long)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from auth import app as auth_app
from auth.testing import AuthServer, make_config, start_server, stop_server
from kiln.common.testing import free_port
from kiln.common.testing.certs import PrivateCa
from kiln.common.testing.services import ServiceProcess, migrate
from kiln.common.testing.tls_nats import TlsNatsServer

KILN = Path(sys.executable).with_name("kiln")
# What the developer's shell may set that would change what the tests run.
KILN_VARIABLES = (
    "KILN_TOKEN", "KILN_API_KEY", "KILN_CA", "KILN_TLS", "KILN_INSECURE", "KILN_CLIENT_CERT",
    "KILN_CLIENT_KEY", "KILN_SERVER_NAME",
)  # fmt: skip
PASSWORD = "correct horse battery"
SPEC = 'name: tls cats\nprompt: "a {color} cat"\nvariables:\n  color: [red, blue]\n'


class TlsServiceProcess(ServiceProcess):
    """A service serving TLS only, whose health the harness reads on the plaintext
    GRPC_HEALTH_PORT, the way the Kubernetes probes do."""

    def __init__(self, module: str, env: dict[str, str]) -> None:
        self.health_port = free_port()
        super().__init__(module, {**env, "GRPC_HEALTH_PORT": str(self.health_port)})

    def health(self, timeout: float = 1.0, service: str = "") -> int | None:
        with grpc.insecure_channel(f"127.0.0.1:{self.health_port}") as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
            except grpc.RpcError:
                return None
            return int(response.status)


class TlsStack:
    """auth requiring client certificates (mTLS), tasks serving TLS, NATS over TLS from the
    first byte (handshake first), as the prod overlay wires them."""

    def __init__(self, database_url: str, directory: Path) -> None:
        self.ca = PrivateCa(directory / "ca")
        self.nats = TlsNatsServer(self.ca.server("nats"), handshake_first=True).start()
        server = self.ca.server("kiln")
        tasks_client = self.ca.client("tasks")
        env = {
            "DATABASE_URL": database_url,
            "NATS_URL": self.nats.tls_url,
            "NATS_TLS_CA_FILE": str(self.ca.cert_file),
            "NATS_TLS_HANDSHAKE_FIRST": "true",
            "AUTH_KEY_DIR": str(directory / "keys"),
            "AUTH_ARGON2_MEMORY_KIB": "8192",
            "AUTH_ARGON2_TIME_COST": "1",
            "HEALTH_PROBE_INTERVAL_SECONDS": "0.5",
            "GRPC_TLS_CERT_FILE": str(server.cert),
            "GRPC_TLS_KEY_FILE": str(server.key),
        }
        migrate("auth", env)
        migrate("tasks", env)
        self.auth = TlsServiceProcess(
            "auth", {**env, "GRPC_TLS_CLIENT_CA_FILE": str(self.ca.cert_file)}
        )
        self.tasks = TlsServiceProcess(
            "tasks",
            {
                **env,
                "AUTH_TARGET": self.auth.target,
                "GRPC_CLIENT_CA_FILE": str(self.ca.cert_file),
                "GRPC_CLIENT_CERT_FILE": str(tasks_client.cert),
                "GRPC_CLIENT_KEY_FILE": str(tasks_client.key),
            },
        )
        try:
            self.auth.start()
            self.tasks.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.tasks.close()
        self.auth.close()
        self.nats.close()


@pytest.fixture
def tls_stack(database_url: str, tmp_path: Path) -> Iterator[TlsStack]:
    stack = TlsStack(database_url, tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def _kiln(
    stack: TlsStack, home: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home),
        "KILN_TARGET": stack.tasks.target,
        "KILN_AUTH_TARGET": stack.auth.target,
    }
    for variable in KILN_VARIABLES:
        env.pop(variable, None)
    result = subprocess.run(
        [str(KILN), *args], input=stdin, capture_output=True, text=True, env=env,
        timeout=60, check=False,
    )  # fmt: skip
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
async def mtls_auth(
    database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[AuthServer, PrivateCa]]:
    """An in-process auth server serving TLS only, requiring client certificates."""
    ca = PrivateCa(tmp_path / "ca")
    cert = ca.server("auth", hosts=("auth.kiln.svc",))
    cfg = make_config(
        database_url,
        GRPC_TLS_CERT_FILE=str(cert.cert),
        GRPC_TLS_KEY_FILE=str(cert.key),
        GRPC_TLS_CLIENT_CA_FILE=str(ca.cert_file),
    )
    await asyncio.to_thread(auth_app.migrate, cfg)
    server = await start_server(cfg)
    yield server, ca
    await stop_server(server)


async def _kiln_async(
    home: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    environ = {**os.environ, "XDG_CONFIG_HOME": str(home)}
    for variable in KILN_VARIABLES:
        environ.pop(variable, None)
    environ.update(env or {})
    process = await asyncio.create_subprocess_exec(
        str(KILN), *args, env=environ, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert b"Traceback" not in err
    return int(process.returncode or 0), out.decode(), err.decode()


async def test_cli_signs_in_over_mtls_with_ca_and_client_certificate(
    mtls_auth: tuple[AuthServer, PrivateCa], tmp_path: Path
) -> None:
    """`kiln --ca --cert --key` registers, signs in and calls an authenticated RPC at an
    auth server requiring mTLS; through a host name the certificate does not list it works
    once KILN_SERVER_NAME gives one it does (the KILN_* variables standing in for the
    flags), and `--insecure` with a client certificate works without the CA. Without the
    client certificate, with a certificate but no key, or with both --insecure and --ca it
    fails in one line."""
    server, ca = mtls_auth
    target = ("--auth-target", f"127.0.0.1:{server.port}")
    me = ca.client("me")
    mtls = ("--ca", str(ca.cert_file), "--cert", str(me.cert), "--key", str(me.key))
    email = f"tls-{uuid.uuid4().hex[:8]}@example.com"
    home = tmp_path / "home"
    register = ("register", "--email", email, "--password-stdin")

    code, _, err = await _kiln_async(
        home, *target, "--ca", str(ca.cert_file), *register, stdin=PASSWORD
    )
    assert code == 1
    assert err.startswith("kiln: error: UNAVAILABLE"), err
    code, _, err = await _kiln_async(
        home, *target, "--cert", str(me.cert), *register, stdin=PASSWORD
    )
    assert code == 2
    assert "--cert and --key go together" in err

    code, out, err = await _kiln_async(home, *target, *mtls, *register, stdin=PASSWORD)
    assert code == 0, err
    login = ("login", "--email", email, "--password-stdin")
    code, out, err = await _kiln_async(home, *target, *mtls, *login, stdin=PASSWORD)
    assert code == 0, err
    by_name = ("--auth-target", f"localhost:{server.port}", "whoami", "--json")
    code, _, err = await _kiln_async(home, *mtls, *by_name)
    assert code == 1  # the certificate names auth.kiln.svc and 127.0.0.1, not localhost
    assert err.startswith("kiln: error: UNAVAILABLE"), err
    from_env = {
        "KILN_CA": str(ca.cert_file), "KILN_CLIENT_CERT": str(me.cert),
        "KILN_CLIENT_KEY": str(me.key), "KILN_SERVER_NAME": "auth.kiln.svc",
    }  # fmt: skip
    code, out, err = await _kiln_async(home, *by_name, env=from_env)
    assert code == 0, err
    assert email in out

    certificate = ("--cert", str(me.cert), "--key", str(me.key))
    code, out, err = await _kiln_async(home, *target, "--insecure", *certificate, "whoami")
    assert code == 0, err  # encrypted, the server's certificate taken as presented
    code, _, err = await _kiln_async(home, *target, "--insecure", *mtls, "whoami")
    assert code == 2
    assert "--insecure and --ca contradict each other" in err


@pytest.mark.long
@pytest.mark.timeout(120)
def test_cli_and_key_fetch_work_over_tls_and_plaintext_is_refused(
    tls_stack: TlsStack, tmp_path: Path
) -> None:
    """The CLI with the CA bundle and a client certificate signs in at the mTLS auth service
    and creates a task at the TLS tasks service, which verifies the token with keys it
    fetched from auth over mTLS and reaches NATS over TLS. Without the certificate, without
    the CA, or in plaintext, the CLI gets one clear UNAVAILABLE line; `--insecure` reaches
    the TLS-only tasks service without the CA."""
    home = tmp_path / "home"
    ca = str(tls_stack.ca.cert_file)
    me = tls_stack.ca.client("me")
    mtls = ("--ca", ca, "--cert", str(me.cert), "--key", str(me.key))
    email = f"tls-{uuid.uuid4().hex[:8]}@example.com"

    for refused_options in ((), ("--ca", ca), ("--insecure",)):
        refused = _kiln(
            tls_stack, home, *refused_options, "register", "--email", email,
            "--password-stdin", stdin=PASSWORD,
        )  # fmt: skip
        assert refused.returncode == 1, refused_options
        assert refused.stderr.startswith("kiln: error: UNAVAILABLE"), refused.stderr

    registered = _kiln(
        tls_stack, home, *mtls, "register", "--email", email, "--password-stdin", stdin=PASSWORD
    )
    assert registered.returncode == 0, registered.stderr
    login = _kiln(
        tls_stack, home, *mtls, "login", "--email", email, "--password-stdin", stdin=PASSWORD
    )
    assert login.returncode == 0, login.stderr

    spec = tmp_path / "cats.yaml"
    spec.write_text(SPEC)
    created = _kiln(tls_stack, home, "--ca", ca, "task", "create", str(spec), "--json")
    assert created.returncode == 0, created.stderr + tls_stack.tasks.log_tail()
    assert '"total_images": 2' in created.stdout

    plaintext = _kiln(tls_stack, home, "task", "list")
    assert plaintext.returncode == 1
    assert plaintext.stderr.startswith("kiln: error: UNAVAILABLE"), plaintext.stderr
    insecure = _kiln(tls_stack, home, "--insecure", "task", "list", "--json")
    assert insecure.returncode == 0, insecure.stderr
    assert "tls cats" in insecure.stdout
