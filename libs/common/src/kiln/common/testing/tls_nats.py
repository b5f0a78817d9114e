"""A private nats-server that accepts TLS clients only, for tests of NATS over TLS."""

from __future__ import annotations

from pathlib import Path

from kiln.common.testing._process import ManagedProcess
from kiln.common.testing.certs import CertFiles
from kiln.common.testing.nats_server import NatsServer, nats_server_binary


class TlsNatsServer(NatsServer):
    """A NatsServer that accepts TLS clients only (and, with `client_ca`, only clients with a
    certificate that CA signed)."""

    def __init__(self, cert: CertFiles, client_ca: Path | None = None) -> None:
        super().__init__()
        self.cert = cert
        self.client_ca = client_ca

    @property
    def tls_url(self) -> str:
        """The client URL with the `tls://` scheme."""
        return f"tls://{self.host}:{self.port}"

    def _launch(self) -> ManagedProcess:
        argv = [
            str(nats_server_binary()),
            "-js", "-sd", str(self.store_dir), "-a", self.host, "-p", str(self.port),
            "-m", str(self.monitor_port),
            "--tls", "--tlscert", str(self.cert.cert), "--tlskey", str(self.cert.key),
        ]  # fmt: skip
        if self.client_ca is not None:
            argv += ["--tlsverify", "--tlscacert", str(self.client_ca)]
        return ManagedProcess(argv, log_path=self.log_path, cwd=self.directory)
