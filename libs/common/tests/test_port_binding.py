"""Binding the gRPC port: bind first, report what was bound (GRPC_PORT_FILE), and with a
taken port either take a free one (GRPC_PORT_FALLBACK) or fail naming the port."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kiln.common import server
from kiln.common.settings import ServerSettings


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another listener holds for the whole test."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def settings(port: int, *, fallback: bool = False, port_file: str = "") -> ServerSettings:
    return ServerSettings(
        grpc_host="127.0.0.1",
        grpc_port=port,
        metrics_port=-1,
        grpc_port_fallback=fallback,
        grpc_port_file=port_file,
    )


async def test_taken_port_with_fallback_binds_a_free_one_and_reports_it(
    taken_port: int, tmp_path: Path
) -> None:
    """With GRPC_PORT taken and the fallback on, the server binds another port, serves on
    it, and writes that port (not the wanted one) to GRPC_PORT_FILE after binding."""
    port_file = tmp_path / "grpc.port"
    host = server.ServiceHost(settings(taken_port, fallback=True, port_file=str(port_file)), [])
    port = await host.start()
    try:
        assert port not in (0, taken_port)
        assert port_file.read_text().strip() == str(port)
    finally:
        await host.monitor.stop()
        await host.server.stop(0)


async def test_taken_port_without_fallback_fails_naming_the_port(taken_port: int) -> None:
    """Without the fallback a taken port stops the start with an OSError that names it."""
    host = server.ServiceHost(settings(taken_port), [])
    with pytest.raises(OSError, match=f"could not bind gRPC port 127.0.0.1:{taken_port}"):
        await host.start()
    await host.server.stop(0)
