"""TLS of Kiln's gRPC servers and clients, with certificates made in the test."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from kiln.common import config, server, tls
from kiln.common.config import ConfigError
from kiln.common.settings import (
    GrpcClientTlsSettings,
    NatsTlsSettings,
    ServerSettings,
    ServerTlsSettings,
)
from kiln.common.testing.certs import CertFiles, PrivateCa

SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCa:
    return PrivateCa(tmp_path / "ca")


@pytest.fixture
def server_cert(ca: PrivateCa) -> CertFiles:
    return ca.server()


def _settings(**environ: str) -> ServerSettings:
    base = {"GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0", "METRICS_PORT": "-1"}
    return config.load(ServerSettings, environ={**base, **environ}, env_file=None)


async def _started(settings: ServerSettings) -> AsyncIterator[server.ServiceHost]:
    host = server.ServiceHost(settings, [])
    await host.start()
    try:
        yield host
    finally:
        await host.server.stop(0)
        if host.health_server is not None:
            await host.health_server.stop(0)


async def _health(channel: grpc.aio.Channel) -> int:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(response.status)


def _client(ca: PrivateCa, cert: CertFiles | None = None) -> GrpcClientTlsSettings:
    return GrpcClientTlsSettings(
        grpc_client_ca_file=str(ca.cert_file),
        grpc_client_cert_file=str(cert.cert) if cert else "",
        grpc_client_key_file=str(cert.key) if cert else "",
    )


@pytest.fixture
async def tls_host(server_cert: CertFiles) -> AsyncIterator[server.ServiceHost]:
    settings = _settings(
        GRPC_TLS_CERT_FILE=str(server_cert.cert),
        GRPC_TLS_KEY_FILE=str(server_cert.key),
        GRPC_HEALTH_PORT="0",
    )
    async for host in _started(settings):
        yield host


async def test_tls_server_refuses_plaintext_and_serves_clients_trusting_its_ca(
    tls_host: server.ServiceHost, ca: PrivateCa, tmp_path: Path
) -> None:
    """With a certificate and key the server speaks TLS only: a plaintext client and a client
    trusting another CA cannot call it; a client with the server's CA bundle can."""
    target = f"127.0.0.1:{tls_host.port}"
    async with grpc.aio.insecure_channel(target) as plaintext:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _health(plaintext)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    other_ca = PrivateCa(tmp_path / "other", name="another ca")
    async with tls.channel(target, _client(other_ca)) as untrusting:
        with pytest.raises(grpc.aio.AioRpcError) as unverified:
            await _health(untrusting)
        assert unverified.value.code() == grpc.StatusCode.UNAVAILABLE
    async with tls.channel(target, _client(ca)) as trusting:
        assert await _health(trusting) == SERVING


async def test_health_port_answers_probes_in_plaintext_with_health_only(
    tls_host: server.ServiceHost,
) -> None:
    """GRPC_HEALTH_PORT serves the TLS server's health statuses in plaintext (for Kubernetes
    `grpc:` probes) and nothing else: its reflection lists Health alone."""
    assert tls_host.health_port > 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{tls_host.health_port}") as channel:
        assert await _health(channel) == SERVING
        liveness = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=server.LIVENESS_SERVICE), timeout=5
        )
        assert liveness.status == SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        listed = [
            service.name
            async for response in reflect
            for service in response.list_services_response.service
        ]
    assert sorted(listed) == ["grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]


async def test_mtls_refuses_clients_without_a_certificate_from_the_client_ca(
    ca: PrivateCa, server_cert: CertFiles, tmp_path: Path
) -> None:
    """With GRPC_TLS_CLIENT_CA_FILE the server requires a client certificate signed by that
    CA: no certificate, or one from another CA, is refused; one from the CA is served."""
    settings = _settings(
        GRPC_TLS_CERT_FILE=str(server_cert.cert),
        GRPC_TLS_KEY_FILE=str(server_cert.key),
        GRPC_TLS_CLIENT_CA_FILE=str(ca.cert_file),
    )
    stranger = PrivateCa(tmp_path / "stranger", name="stranger ca").client("stranger")
    async for host in _started(settings):
        target = f"127.0.0.1:{host.port}"
        for refused_cert in (None, stranger):
            async with tls.channel(target, _client(ca, refused_cert)) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await _health(channel)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        async with tls.channel(target, _client(ca, ca.client())) as channel:
            assert await _health(channel) == SERVING


def test_unreadable_tls_file_stops_the_start_naming_its_variable(tmp_path: Path) -> None:
    """A TLS file that does not exist fails config loading with the variable's name."""
    with pytest.raises(ConfigError) as missing:
        _settings(GRPC_TLS_CERT_FILE=str(tmp_path / "nope.crt"))
    assert missing.value.variable == "GRPC_TLS_CERT_FILE"
    with pytest.raises(ConfigError) as missing_ca:
        config.load(
            GrpcClientTlsSettings,
            environ={"GRPC_CLIENT_CA_FILE": str(tmp_path / "ca.crt")},
            env_file=None,
        )
    assert missing_ca.value.variable == "GRPC_CLIENT_CA_FILE"


def test_bad_tls_material_stops_the_start_naming_its_variable(
    ca: PrivateCa, server_cert: CertFiles, tmp_path: Path
) -> None:
    """Building the server fails with the variable's name for a certificate without its key,
    a file that holds no certificate, a key of another certificate, and a client CA without
    a server certificate."""
    other = ca.server("other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    cases = [
        ("GRPC_TLS_KEY_FILE", {"GRPC_TLS_CERT_FILE": str(server_cert.cert)}),
        (
            "GRPC_TLS_CERT_FILE",
            {"GRPC_TLS_CERT_FILE": str(garbage), "GRPC_TLS_KEY_FILE": str(server_cert.key)},
        ),
        (
            "GRPC_TLS_KEY_FILE",
            {"GRPC_TLS_CERT_FILE": str(server_cert.cert), "GRPC_TLS_KEY_FILE": str(other.key)},
        ),
        ("GRPC_TLS_CERT_FILE", {"GRPC_TLS_CLIENT_CA_FILE": str(ca.cert_file)}),
    ]
    for variable, environ in cases:
        with pytest.raises(ConfigError) as error:
            server.ServiceHost(_settings(**environ), [])
        assert error.value.variable == variable, environ


async def _serves(target: str, ca: PrivateCa) -> bool:
    async with tls.channel(target, _client(ca)) as channel:
        try:
            return bool(await _health(channel) == SERVING)
        except grpc.aio.AioRpcError:
            return False


async def test_server_picks_up_a_renewed_certificate_without_restart(tmp_path: Path) -> None:
    """When the certificate and key files are replaced (as cert-manager renews a Secret),
    new connections get the new certificate within seconds, with no restart."""
    old_ca, new_ca = PrivateCa(tmp_path / "old"), PrivateCa(tmp_path / "new", name="new ca")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    issued = old_ca.server()
    shutil.copy(issued.cert, cert)
    shutil.copy(issued.key, key)
    settings = _settings(GRPC_TLS_CERT_FILE=str(cert), GRPC_TLS_KEY_FILE=str(key))
    async for host in _started(settings):
        target = f"127.0.0.1:{host.port}"
        assert await _serves(target, old_ca)
        renewed = new_ca.server()
        shutil.copy(renewed.key, key)
        shutil.copy(renewed.cert, cert)
        deadline = time.monotonic() + 10
        while not await _serves(target, new_ca):
            assert time.monotonic() < deadline, "the renewed certificate was not picked up"
            await asyncio.sleep(0.2)
        assert not await _serves(target, old_ca)


def test_a_broken_renewal_keeps_the_certificate_in_use(ca: PrivateCa, tmp_path: Path) -> None:
    """A renewal that is half written (a key of another certificate) or not a certificate
    is not taken: the certificate in use stays until a good pair is in place."""
    issued = ca.server()
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(issued.cert, cert)
    shutil.copy(issued.key, key)
    files = tls.ServerCertificateFiles(
        ServerTlsSettings(grpc_tls_cert_file=str(cert), grpc_tls_key_file=str(key)),
        reload_interval=0,
    )
    assert files.renewed() is None  # nothing changed
    shutil.copy(ca.server("other").key, key)
    assert files.renewed() is None  # the key does not belong to the certificate
    cert.write_text("garbage\n")
    assert files.renewed() is None
    renewed = ca.server("renewed")
    shutil.copy(renewed.cert, cert)
    shutil.copy(renewed.key, key)
    assert files.renewed() is not None
    assert files.renewed() is None  # taken once


def test_client_tls_settings_that_do_not_fit_together_name_the_missing_variable(
    ca: PrivateCa,
) -> None:
    """A client certificate without its key, or without a CA bundle to verify the server,
    is refused at start with the variable that is missing, for gRPC clients and NATS."""
    me = ca.client("me")
    with pytest.raises(ConfigError) as no_key:
        tls.channel_credentials(
            GrpcClientTlsSettings(
                grpc_client_ca_file=str(ca.cert_file), grpc_client_cert_file=str(me.cert)
            )
        )
    assert no_key.value.variable == "GRPC_CLIENT_KEY_FILE"
    with pytest.raises(ConfigError) as no_ca:
        tls.nats_ssl_context(
            NatsTlsSettings(nats_tls_cert_file=str(me.cert), nats_tls_key_file=str(me.key))
        )
    assert no_ca.value.variable == "NATS_TLS_CA_FILE"
