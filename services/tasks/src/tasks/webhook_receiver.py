"""A real local webhook receiver for tests: an HTTP (or HTTPS) server on loopback that keeps
every POST it gets, and for each one how many attempts of that delivery the database had
already recorded when the POST arrived (so a test can prove nothing is sent unrecorded)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import http.server
import ssl
import threading
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclasses.dataclass
class Received:
    """One POST as the receiver saw it."""

    headers: dict[str, str]
    body: str
    server_name: str | None
    """The TLS SNI name the client sent (None over plain HTTP)."""
    recorded_attempts: int | None
    """Attempt rows of this delivery already committed when the POST arrived."""


class Receiver:
    """A threaded HTTP server on 127.0.0.1 answering every POST with `status`."""

    def __init__(
        self,
        *,
        status: int = 204,
        database_url: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.status = status
        self.received: list[Received] = []
        self._database_url = database_url
        self._names: dict[int, str | None] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                receiver._keep(self, body)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            tls.sni_callback = self._remember_name
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def _remember_name(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
        self._names[id(sock)] = name

    def _keep(self, handler: http.server.BaseHTTPRequestHandler, body: str) -> None:
        server_name = self._names.get(id(handler.connection))
        recorded = None
        delivery_id = handler.headers.get("Kiln-Webhook-Id")
        if self._database_url is not None and delivery_id:
            with psycopg.connect(self._database_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM tasks.webhook_attempts WHERE delivery_id = %s",
                    (delivery_id,),
                ).fetchone()
            recorded = int(row[0]) if row else 0
        self.received.append(Received(dict(handler.headers), body, server_name, recorded))

    def url(self, host: str = "127.0.0.1", scheme: str = "http") -> str:
        """The hook's URL under `host`."""
        return f"{scheme}://{host}:{self.port}/hook"

    def close(self) -> None:
        """Stops the server."""
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclasses.dataclass(frozen=True)
class TestCertificates:
    """A private CA's client context and one server context per certificate it signed."""

    client: ssl.SSLContext
    servers: list[ssl.SSLContext]


def certificates(folder: Path, *server_names: str) -> TestCertificates:
    """A private CA and, per name, a server certificate for that name, written to `folder`."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiln test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    servers = []
    for i, name in enumerate(server_names):
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = folder / f"server{i}.pem", folder / f"server{i}.key"
        cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert_path, key_path)
        servers.append(server)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return TestCertificates(client=client, servers=servers)
