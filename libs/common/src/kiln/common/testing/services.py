"""Kiln service processes for cross-service and fault tests.

`ServiceProcess` runs `python -m <module>` with a given environment on a free gRPC port,
waits until its health check says SERVING, and can stop (SIGTERM), kill (-9), pause and
restart it, like the NATS and PostgreSQL test servers. With `learn_port`, the port is not
chosen here: the process binds (its preferred port, or any free one when that is taken) and
writes the port it got to a file (GRPC_PORT_FILE), and only that port is ever probed, so a
server someone else runs can never be mistaken for this process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kiln.common.testing.nats_server import service_env
from kiln.common.testing.ports import free_port


class ServiceProcess:
    """One Kiln process (`python -m auth`, `tasks`, `imagegen`...) under test control."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        args: Sequence[str] = (),
        *,
        port: int | None = None,
        name: str | None = None,
        log_path: Path | None = None,
        learn_port: bool = False,
    ) -> None:
        self.module = module
        self.name = name or module
        self.args = list(args)
        self.port_file = (
            Path(tempfile.mkstemp(prefix=f"kiln-{self.name}-", suffix=".port")[1])
            if learn_port
            else None
        )
        self.port = port or (0 if learn_port else free_port())
        """The gRPC port; with `learn_port`, 0 until the process has reported it."""
        self.env = {
            **os.environ,
            "LOG_FORMAT": "json",
            "SHUTDOWN_DELAY_SECONDS": "0",
            # Without its own port every process would try the default 9464 and all but
            # one (possibly of another test run) would serve no metrics.
            "METRICS_PORT": str(free_port()),
            **env,
            # A harness NATS URL carries the test superuser's credentials; the service gets
            # its own role's instead, so it runs with the permissions it has in production.
            **service_env(env.get("NATS_URL", ""), module),
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.port),
        }
        if self.port_file is not None:
            self.env["GRPC_PORT_FILE"] = str(self.port_file)
            self.env["GRPC_PORT_FALLBACK"] = "true"
        self.metrics_port = int(self.env["METRICS_PORT"])
        """Where /metrics is served (negative: off)."""
        self.log_path = log_path or Path(
            tempfile.mkstemp(prefix=f"kiln-{self.name}-", suffix=".log")[1]
        )
        self._keep_log = log_path is not None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        """host:port for a gRPC channel."""
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True, timeout: float = 30.0) -> ServiceProcess:
        """Launches the process; with `wait`, blocks until it reports SERVING."""
        if self.port_file is not None:
            # A restart prefers the port it had; the new process reports what it got.
            self.env["GRPC_PORT"] = str(self.port)
            self.port_file.write_text("")
            self.port = 0
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_serving(timeout)
        return self

    def reported_port(self) -> int:
        """The port the process wrote to its port file (0: not yet), kept in `port`."""
        if self.port == 0 and self.port_file is not None:
            text = self.port_file.read_text().strip()
            self.port = int(text) if text else 0
        return self.port

    def wait_port(self, timeout: float = 30.0) -> int:
        """Blocks until the process has reported its port; AssertionError with the log
        tail when it exits or takes longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.reported_port():
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} reported no port in {timeout}s")
            time.sleep(0.05)
        return self.port

    def health(self, timeout: float = 1.0, service: str = "") -> int | None:
        """The health status of `service` ("" = overall) now, or None when the server
        does not answer (or, with `learn_port`, has not reported its port yet)."""
        if not self.reported_port():
            return None
        with grpc.insecure_channel(self.target) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=timeout
                )
            except grpc.RpcError:
                return None
            return int(response.status)

    def wait_health(self, status: int, timeout: float = 30.0) -> None:
        """Blocks until health reports `status`; AssertionError with the log tail if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if self.health() == status:
                return
            time.sleep(0.1)
        raise AssertionError(
            f"{self.name} did not reach health {status} in {timeout}s:\n{self.log_tail()}"
        )

    def wait_serving(self, timeout: float = 30.0) -> None:
        """Blocks until health is SERVING."""
        self.wait_health(health_pb2.HealthCheckResponse.SERVING, timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process's output."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: signal.Signals) -> None:
        """Sends `sig` to the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then waits; kills after `timeout`. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, no chance to clean up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, wait: bool = True) -> ServiceProcess:
        """Stops (if running) and starts again on the same port."""
        self.stop()
        return self.start(wait)

    def close(self) -> None:
        """Stops the process and removes its log."""
        self.stop(timeout=10)
        if not self._keep_log:
            self.log_path.unlink(missing_ok=True)
        if self.port_file is not None:
            self.port_file.unlink(missing_ok=True)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()


def migrate(module: str, env: Mapping[str, str]) -> None:
    """Runs `python -m <module> migrate`; raises with its output when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", module, "migrate"],
        env={**os.environ, "LOG_FORMAT": "json", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(f"{module} migrate failed:\n{result.stdout}\n{result.stderr}")
