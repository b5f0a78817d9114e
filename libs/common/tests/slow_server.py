"""A Kiln server in its own process, for shutdown tests: `python slow_server.py PORT_FILE`.

It serves the scripted AuthService (ListUsers sleeps page_size/10 seconds) and writes its
port to PORT_FILE once it is serving.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kiln.auth.v1 import auth_pb2_grpc
from kiln.common import interceptors, logging, runner, server
from kiln.common.settings import ServerSettings
from kiln.common.testing.tokens import TestSigner

sys.path.insert(0, str(Path(__file__).parent))
from scripted_servicer import ScriptedAuthServicer


async def main(port_file: Path) -> None:
    settings = ServerSettings(
        grpc_host="127.0.0.1", grpc_port=0, shutdown_delay=1.0, grace_period=10.0
    )
    servicer = ScriptedAuthServicer()
    host = server.ServiceHost(
        settings,
        [
            server.GrpcService(
                "kiln.auth.v1.AuthService",
                lambda s: auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, s),
            )
        ],
        interceptors=interceptors.standard_interceptors(
            TestSigner().verifier(), {"/kiln.auth.v1.AuthService/ListUsers"}
        ),
    )
    await host.start()
    host.install_signal_handlers()
    port_file.write_text(str(host.port))
    await host.wait()


if __name__ == "__main__":
    logging.configure_logging("slow-server", "info", "json")
    runner.run(main(Path(sys.argv[1])))
