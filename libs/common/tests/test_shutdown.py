"""Graceful shutdown of a real server process: SIGTERM -> NOT_SERVING -> drain -> exit 0."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kiln.auth.v1 import auth_pb2, auth_pb2_grpc


async def _wait_for_port(port_file: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text():
            return int(port_file.read_text())
        assert process.poll() is None, "server exited early"
        await asyncio.sleep(0.05)
    raise AssertionError("server did not start")


async def test_sigterm_drains_in_flight_rpc_and_flips_health(tmp_path: Path) -> None:
    """On SIGTERM health turns NOT_SERVING at once, an RPC already running still finishes
    with OK, and the process exits 0."""
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("slow_server.py")), str(port_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        port = await _wait_for_port(port_file, process)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            before = await health.Check(health_pb2.HealthCheckRequest())
            assert before.status == health_pb2.HealthCheckResponse.SERVING

            slow_call = asyncio.ensure_future(
                auth_pb2_grpc.AuthServiceStub(channel).ListUsers(
                    auth_pb2.ListUsersRequest(page_size=20)
                )
            )  # sleeps 2 s in the server
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            during = await health.Check(health_pb2.HealthCheckRequest())
            assert during.status == health_pb2.HealthCheckResponse.NOT_SERVING

            response = await slow_call
            assert response.next_page_token == "done"
        assert await asyncio.to_thread(process.wait, 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stderr:
            process.stderr.close()
