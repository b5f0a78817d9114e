"""NATS over TLS: Kiln's connection to a real nats-server started with TLS in the test."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats import errors as nats_errors

from kiln.common import jetstream, tls
from kiln.common.settings import NatsSettings
from kiln.common.testing.certs import PrivateCa
from kiln.common.testing.tls_nats import TlsNatsServer

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCa:
    return PrivateCa(tmp_path / "ca")


@pytest.fixture
def tls_nats(ca: PrivateCa) -> Iterator[TlsNatsServer]:
    with TlsNatsServer(ca.server("nats")) as server:
        yield server


async def test_connection_with_the_ca_works_over_tls(
    tls_nats: TlsNatsServer, ca: PrivateCa
) -> None:
    """With NATS_TLS_CA_FILE the service connects over TLS (the server reports a TLS
    session for it) and JetStream answers, for `tls://` and `nats://` URLs alike."""
    for url in (tls_nats.tls_url, tls_nats.url):
        settings = NatsSettings(nats_url=url, nats_tls_ca_file=str(ca.cert_file))
        client = await jetstream.connect(settings, "tls-test")
        try:
            assert await jetstream.ping(client)
            with _NO_PROXY.open(f"{tls_nats.monitor_url}/connz", timeout=5) as response:
                connections = json.load(response)["connections"]
            assert [c["tls_version"] for c in connections if c["name"] == "tls-test"] == ["1.3"]
        finally:
            await client.close()


async def test_plaintext_client_is_refused(tls_nats: TlsNatsServer) -> None:
    """A client speaking plaintext NATS to the TLS server gets no session: the server
    announces that TLS is required and closes the connection on a plaintext CONNECT."""
    reader, writer = await asyncio.open_connection(tls_nats.host, tls_nats.port)
    try:
        info = await asyncio.wait_for(reader.readline(), 5)
        assert b'"tls_required":true' in info
        writer.write(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
        await writer.drain()
        rest = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        assert rest == b""
    finally:
        writer.close()


async def test_client_that_does_not_trust_the_ca_is_refused(tls_nats: TlsNatsServer) -> None:
    """Without the CA bundle the server's certificate does not verify, so no connection."""
    with pytest.raises((nats_errors.NoServersError, OSError)):
        await nats.connect(
            tls_nats.tls_url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0
        )


async def test_mutual_tls_needs_a_client_certificate(ca: PrivateCa) -> None:
    """Against a server verifying clients, NATS_TLS_CERT_FILE/KEY_FILE get a connection;
    the CA alone does not."""
    with TlsNatsServer(ca.server("nats"), client_ca=ca.cert_file) as server:
        without = NatsSettings(nats_url=server.tls_url, nats_tls_ca_file=str(ca.cert_file))
        with pytest.raises((nats_errors.NoServersError, OSError)):
            await nats.connect(
                server.tls_url,
                tls=tls.nats_ssl_context(without),
                connect_timeout=2,
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
        client_cert = ca.client("tasks")
        settings = NatsSettings(
            nats_url=server.tls_url,
            nats_tls_ca_file=str(ca.cert_file),
            nats_tls_cert_file=str(client_cert.cert),
            nats_tls_key_file=str(client_cert.key),
        )
        client = await jetstream.connect(settings, "mtls-test")
        try:
            assert await jetstream.ping(client)
        finally:
            await client.close()


async def test_handshake_first_never_speaks_plaintext(ca: PrivateCa) -> None:
    """With NATS_TLS_HANDSHAKE_FIRST against a server configured the same way, the client
    starts TLS before any NATS protocol and JetStream answers; to a plaintext client the
    server says nothing at all (no INFO) and closes the connection."""
    with TlsNatsServer(ca.server("nats"), handshake_first=True) as server:
        settings = NatsSettings(
            nats_url=server.tls_url,
            nats_tls_ca_file=str(ca.cert_file),
            nats_tls_handshake_first=True,
        )
        client = await jetstream.connect(settings, "handshake-first")
        try:
            assert await jetstream.ping(client)
        finally:
            await client.close()
        reader, writer = await asyncio.open_connection(server.host, server.port)
        try:  # the server waits for a TLS hello (its 2 s TLS timeout), then hangs up
            assert await asyncio.wait_for(reader.read(), 10) == b""
        finally:
            writer.close()
