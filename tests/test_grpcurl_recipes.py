"""The README's grpcurl recipes work as written against a real stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.common.testing.stack import KilnStack

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- grpcurl-recipes:start -->", "<!-- grpcurl-recipes:end -->"


def recipes() -> str:
    """The shell block between the README's markers."""
    block = (ROOT / "README.md").read_text().split(START, 1)[1].split(END, 1)[0]
    return block.split("```sh\n", 1)[1].rsplit("```", 1)[0]


@pytest.mark.timeout(120)
def test_readme_grpcurl_recipes_run(stack: KilnStack, tmp_path: Path) -> None:
    """Every recipe succeeds: list, describe, health, Register, Login, GetCurrentUser,
    CreateTask, WatchTask to the end, GetTask, ListTasks and ListSubtasks."""
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


def test_recipes_block_is_present() -> None:
    """The README keeps its recipe block between the markers, starting with the targets."""
    block = recipes()
    assert block.startswith("export AUTH=")
