"""The README's grpcurl recipes work as written against a real stack."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.common import config, server
from kiln.common.settings import ServerSettings
from kiln.common.testing.certs import PrivateCa
from kiln.common.testing.stack import KilnStack

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- grpcurl-recipes:start -->", "<!-- grpcurl-recipes:end -->"
TLS_START, TLS_END = "<!-- grpcurl-tls:start -->", "<!-- grpcurl-tls:end -->"


def recipes(start: str = START, end: str = END) -> str:
    """The shell block between the README's markers."""
    block = (ROOT / "README.md").read_text().split(start, 1)[1].split(end, 1)[0]
    return block.split("```sh\n", 1)[1].rsplit("```", 1)[0]


@pytest.mark.timeout(120)
def test_readme_grpcurl_recipes_run(stack: KilnStack, tmp_path: Path) -> None:
    """Every recipe succeeds: list, describe, health, Register, Login, GetCurrentUser,
    CreateTask, WatchTask to the end, GetTask, ListTasks and ListSubtasks, and the slice
    recipes: PauseTask, GetTaskGrid, CancelTask, RetryTask and ResumeTask of one slice."""
    script = recipes()
    script = re.sub(
        r"^export AUTH=\S+ TASKS=\S+",
        f"export AUTH={stack.auth.target} TASKS={stack.tasks.target}",
        script,
        count=1,
        flags=re.MULTILINE,
    )
    script = script.replace(".venv/bin/grpcurl", str(Path(sys.executable).with_name("grpcurl")))
    script += '\necho "TASK_ID=$TASK_ID"\n'
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "kiln.tasks.v1.TaskService" in out and "grpc.health.v1.Health" in out
    assert '"status": "SERVING"' in out
    assert '"email": "me@example.com"' in out
    assert "TASK_STATE_SUCCEEDED" in out  # WatchTask streamed to the end
    assert re.search(r"^TASK_ID=[0-9a-f-]{36}$", out, flags=re.MULTILINE)
    # The slice recipes: the grid with its table, and a retried slice.
    assert '"row_variable": "color"' in out and '"column_variable": "size"' in out
    assert '"retried_count":' in out


def test_recipes_block_is_present() -> None:
    """The README keeps its recipe block between the markers, starting with the targets."""
    block = recipes()
    assert block.startswith("export AUTH=")


async def test_readme_grpcurl_tls_recipes_run(tmp_path: Path) -> None:
    """The README's TLS block works as written against a server requiring mTLS: reflection
    and health over TLS with -cacert/-cert/-key, and health in plaintext on the health port."""
    ca = PrivateCa(tmp_path / "ca")
    cert, me = ca.server("tasks"), ca.client("me")
    environ = {
        "GRPC_HOST": "127.0.0.1", "GRPC_PORT": "0", "METRICS_PORT": "-1",
        "GRPC_HEALTH_PORT": "0", "GRPC_TLS_CERT_FILE": str(cert.cert),
        "GRPC_TLS_KEY_FILE": str(cert.key), "GRPC_TLS_CLIENT_CA_FILE": str(ca.cert_file),
    }  # fmt: skip
    host = server.ServiceHost(config.load(ServerSettings, environ=environ, env_file=None), [])
    await host.start()
    try:
        script = re.sub(
            r"^export TASKS=\S+ HEALTH=\S+",
            f"export TASKS=localhost:{host.port} HEALTH=127.0.0.1:{host.health_port}",
            recipes(TLS_START, TLS_END),
            count=1,
            flags=re.MULTILINE,
        )
        script = re.sub(
            r"^CA=\S+ CERT=\S+ KEY=\S+",
            f"CA={ca.cert_file} CERT={me.cert} KEY={me.key}",
            script,
            count=1,
            flags=re.MULTILINE,
        )
        script = script.replace(".venv/bin/", f"{Path(sys.executable).parent}/")
        result = await asyncio.to_thread(
            subprocess.run,
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
    finally:
        await host.server.stop(0)
        if host.health_server is not None:
            await host.health_server.stop(0)
    assert result.returncode == 0, result.stderr
    assert "grpc.health.v1.Health" in result.stdout
    assert result.stdout.count('"status": "SERVING"') == 2
