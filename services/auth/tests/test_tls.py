"""The services' key fetch from the auth service (GetJwks) over TLS with client
certificates (mTLS), against a real auth server on port 0."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auth import app
from auth.config import AuthConfig
from auth.testing import AuthServer, make_config, start_server, stop_server
from kiln.auth.v1 import auth_pb2_grpc
from kiln.common import cli, errors, jwks, tls
from kiln.common.settings import GrpcClientTlsSettings
from kiln.common.testing.certs import PrivateCa
from kiln.common.tokens import TokenVerifier


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCa:
    return PrivateCa(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
async def mtls_auth(auth_database: str, ca: PrivateCa) -> AsyncIterator[AuthServer]:
    """An auth server that serves TLS only and requires client certificates from `ca`."""
    cert = ca.server("auth")
    server = await start_server(
        make_config(
            auth_database,
            GRPC_TLS_CERT_FILE=str(cert.cert),
            GRPC_TLS_KEY_FILE=str(cert.key),
            GRPC_TLS_CLIENT_CA_FILE=str(ca.cert_file),
        )
    )
    yield server
    await stop_server(server)


def _client_settings(ca: PrivateCa, with_certificate: bool = True) -> GrpcClientTlsSettings:
    cert = ca.client("tasks")
    return GrpcClientTlsSettings(
        grpc_client_ca_file=str(ca.cert_file),
        grpc_client_cert_file=str(cert.cert) if with_certificate else "",
        grpc_client_key_file=str(cert.key) if with_certificate else "",
    )


async def test_key_fetch_over_mtls_verifies_tokens(mtls_auth: AuthServer, ca: PrivateCa) -> None:
    """With GRPC_CLIENT_CA_FILE and a client certificate, a service fetches the auth keys
    over mTLS and verifies a token that auth issued over the same kind of channel."""
    target = f"127.0.0.1:{mtls_auth.port}"
    async with tls.channel(target, _client_settings(ca)) as channel:
        client = AuthServer(mtls_auth.app, channel, auth_pb2_grpc.AuthServiceStub(channel), 0)
        account = await client.account()
        verifier = TokenVerifier(
            jwks.JwksKeySource(jwks.grpc_jwks_fetcher(channel)), "kiln-auth", "kiln"
        )
        principal = await verifier.verify(account.tokens.access_token)
    assert principal.user_id == account.user.id


@pytest.mark.parametrize("mode", ["plaintext", "no client certificate", "other ca"])
async def test_key_fetch_without_the_right_tls_is_unavailable(
    mtls_auth: AuthServer, ca: PrivateCa, mode: str, tmp_path: Path
) -> None:
    """A plaintext channel, a TLS channel without a client certificate, or one trusting
    another CA gets no keys: the key source reports UNAVAILABLE, never a verified token."""
    settings = {
        "plaintext": GrpcClientTlsSettings(),
        "no client certificate": _client_settings(ca, with_certificate=False),
        "other ca": _client_settings(PrivateCa(tmp_path / "other", name="other ca")),
    }[mode]
    async with tls.channel(f"127.0.0.1:{mtls_auth.port}", settings) as channel:
        source = jwks.JwksKeySource(jwks.grpc_jwks_fetcher(channel, timeout=2.0))
        with pytest.raises(errors.Unavailable):
            await source.get_key("any")


def test_a_key_of_another_certificate_stops_the_start_naming_the_variable(
    ca: PrivateCa,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The auth entry point with a TLS key that does not belong to its certificate exits 2
    with one line naming GRPC_TLS_KEY_FILE, before it serves anything."""
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    environ = {
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "AUTH_KEY_DIR": str(tmp_path / "keys"),
        "GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0", "METRICS_PORT": "-1",
        "GRPC_TLS_CERT_FILE": str(ca.server("auth").cert),
        "GRPC_TLS_KEY_FILE": str(ca.server("other").key),
    }  # fmt: skip
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        cli.service_main("auth", AuthConfig, app.serve, app.migrate, argv=["serve"])
    assert stopped.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("configuration error: GRPC_TLS_KEY_FILE: ")
