"""How the CLI's channels are secured: plaintext (the local default), or TLS.

TLS is on with `--tls`, with a CA bundle (`--ca`), with a client certificate for mTLS
(`--cert` / `--key`), or with `--insecure`, which trusts whatever certificate the server
presents (for a test ingress with a self-signed certificate; it protects against eavesdropping,
not against an impostor).
"""

from __future__ import annotations

import dataclasses
import ssl
from pathlib import Path

import grpc
from cryptography import x509

from kiln.cli.errors import CliError


@dataclasses.dataclass(frozen=True)
class Transport:
    """The channel security options of one CLI run."""

    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure: bool = False
    server_name: str = ""

    @property
    def uses_tls(self) -> bool:
        """Whether channels are TLS."""
        return bool(self.tls or self.ca_file or self.cert_file or self.insecure)

    def check(self) -> None:
        """Refuses contradictory options before anything connects."""
        if bool(self.cert_file) != bool(self.key_file):
            raise CliError("--cert and --key go together (KILN_CLIENT_CERT / KILN_CLIENT_KEY)", 2)
        if self.insecure and self.ca_file:
            raise CliError("--insecure and --ca contradict each other: choose one", 2)

    def channel(self, target: str) -> grpc.Channel:
        """A channel to `target` with these options."""
        if not self.uses_tls:
            return grpc.insecure_channel(target)
        options: list[tuple[str, str]] = []
        roots: bytes | None
        if self.insecure:
            roots = _presented_certificate(target)
            name = self.server_name or _any_name(roots)
        else:
            roots = _read(self.ca_file, "--ca") if self.ca_file else None
            name = self.server_name
        if name:
            options.append(("grpc.ssl_target_name_override", name))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=roots,
            private_key=_read(self.key_file, "--key") if self.key_file else None,
            certificate_chain=_read(self.cert_file, "--cert") if self.cert_file else None,
        )
        return grpc.secure_channel(target, credentials, options=options)


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise CliError(f"{flag}: cannot read {path}: {error.strerror or error}", 2) from None


def _presented_certificate(target: str) -> bytes:
    """The certificate the server at `target` presents, unverified (for --insecure)."""
    host, _, port = target.rpartition(":")
    try:
        pem = ssl.get_server_certificate((host.strip("[]"), int(port)), timeout=30)
    except (OSError, ValueError) as error:
        raise CliError(f"UNAVAILABLE: cannot fetch the certificate of {target}: {error}") from None
    return pem.encode()


def _any_name(pem: bytes) -> str:
    """A DNS name the certificate is valid for, so the name check passes whatever the
    target's host is (for --insecure)."""
    certificate = x509.load_pem_x509_certificate(pem)
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ""
    dns: list[str] = names.value.get_values_for_type(x509.DNSName)
    return dns[0] if dns else ""
