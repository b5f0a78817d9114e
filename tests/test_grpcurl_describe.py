"""`grpcurl describe` against the real services shows the comments written in protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kiln.common.testing.stack import KilnStack

ROOT = Path(__file__).resolve().parent.parent
GRPCURL = Path(sys.executable).with_name("grpcurl")


def comment_above(proto: str, declaration: str, inside: str | None = None) -> list[str]:
    """The `//` lines right above the first line of `protos/<proto>` that starts with
    `declaration` (after the line starting with `inside`, when given)."""
    lines = [line.strip() for line in (ROOT / "protos" / proto).read_text().splitlines()]
    start = 0 if inside is None else next(i for i, ln in enumerate(lines) if ln.startswith(inside))
    at = next(i for i in range(start, len(lines)) if lines[i].startswith(declaration))
    comment: list[str] = []
    while lines[at - len(comment) - 1].startswith("//"):
        comment.insert(0, lines[at - len(comment) - 1])
    assert comment, f"{proto}: no comment above {declaration!r}"
    return comment


def describe(target: str, symbol: str) -> list[str]:
    """grpcurl's description of `symbol`, one stripped line per item."""
    result = subprocess.run(
        [str(GRPCURL), "-plaintext", target, "describe", symbol],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [line.strip() for line in result.stdout.splitlines()]


def assert_shows(described: list[str], comment: list[str]) -> None:
    """Every line of `comment` appears, in order, as consecutive lines of `described`."""
    windows = [described[i : i + len(comment)] for i in range(len(described))]
    assert comment in windows, "\n".join(["missing:", *comment, "in:", *described])


def test_describe_shows_proto_comments(stack: KilnStack) -> None:
    """Reflection on every service carries the protos' comments: grpcurl describe shows them
    for a service and its RPCs, a request message, a field, and the auth and imagegen
    services, and a single RPC describes by its full name; health and reflection still
    describe."""
    tasks, auth, imagegen = stack.tasks.target, stack.auth.target, stack.workers[0].target
    tasks_proto = "kiln/tasks/v1/tasks.proto"

    service = describe(tasks, "kiln.tasks.v1.TaskService")
    assert_shows(service, comment_above(tasks_proto, "service TaskService "))
    assert_shows(service, comment_above(tasks_proto, "rpc CreateTask("))

    method = describe(tasks, "kiln.tasks.v1.TaskService.PauseTask")
    assert_shows(method, comment_above(tasks_proto, "rpc PauseTask("))

    request = describe(tasks, "kiln.tasks.v1.CreateTaskRequest")
    assert_shows(request, comment_above(tasks_proto, "message CreateTaskRequest "))

    field = describe(tasks, "kiln.tasks.v1.CreateTaskRequest.prompt_template")
    assert_shows(
        field,
        comment_above(tasks_proto, "string prompt_template", inside="message CreateTaskRequest "),
    )

    assert_shows(
        describe(auth, "kiln.auth.v1.AuthService"),
        comment_above("kiln/auth/v1/auth.proto", "service AuthService "),
    )
    assert_shows(
        describe(imagegen, "kiln.imagegen.v1.ImageGenService"),
        comment_above("kiln/imagegen/v1/imagegen.proto", "service ImageGenService "),
    )

    assert "rpc Check ( .grpc.health.v1.HealthCheckRequest )" in " ".join(
        describe(tasks, "grpc.health.v1.Health")
    )
    assert "rpc ServerReflectionInfo" in " ".join(
        describe(tasks, "grpc.reflection.v1alpha.ServerReflection")
    )
