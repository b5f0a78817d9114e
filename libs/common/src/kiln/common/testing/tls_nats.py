"""A private nats-server that accepts TLS clients only, for tests of NATS over TLS."""

from __future__ import annotations

import json
from pathlib import Path

from kiln.common.testing._process import ManagedProcess
from kiln.common.testing.certs import CertFiles
from kiln.common.testing.nats_server import NatsServer, nats_server_binary


class TlsNatsServer(NatsServer):
    """A NatsServer that accepts TLS clients only (and, with `client_ca`, only clients with a
    certificate that CA signed)."""

    def __init__(
        self, cert: CertFiles, client_ca: Path | None = None, handshake_first: bool = False
    ) -> None:
        """`handshake_first`: the server expects TLS at once, before its INFO."""
        super().__init__()
        self.cert = cert
        self.client_ca = client_ca
        self.handshake_first = handshake_first

    @property
    def tls_url(self) -> str:
        """The client URL with the `tls://` scheme."""
        return f"tls://{self.host}:{self.port}"

    def _launch(self) -> ManagedProcess:
        tls = [f"cert_file: {json.dumps(str(self.cert.cert))}"]
        tls.append(f"key_file: {json.dumps(str(self.cert.key))}")
        if self.client_ca is not None:
            tls += [f"ca_file: {json.dumps(str(self.client_ca))}", "verify: true"]
        if self.handshake_first:
            tls.append("handshake_first: true")
        config = self.directory / "tls.conf"
        config.write_text("tls {\n  " + "\n  ".join(tls) + "\n}\n")
        argv = [
            str(nats_server_binary()),
            "-c", str(config),
            "-js", "-sd", str(self.store_dir), "-a", self.host, "-p", str(self.port),
            "-m", str(self.monitor_port),
        ]  # fmt: skip
        return ManagedProcess(argv, log_path=self.log_path, cwd=self.directory)
