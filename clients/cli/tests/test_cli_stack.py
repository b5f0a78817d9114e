"""The `kiln` command against a real stack, as a person or a script would use it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln.common.testing.stack import ADMIN_EMAIL, ADMIN_PASSWORD, USER_PASSWORD, KilnStack

KILN = Path(sys.executable).with_name("kiln")


class Cli:
    """Runs `kiln` with its own config folder and the stack's addresses."""

    def __init__(self, stack: KilnStack, home: Path) -> None:
        self.env = {
            **os.environ, "XDG_CONFIG_HOME": str(home), "KILN_TARGET": stack.tasks.target,
            "KILN_AUTH_TARGET": stack.auth.target,
        }  # fmt: skip
        self.env.pop("KILN_TOKEN", None)
        self.env.pop("KILN_API_KEY", None)

    def run(
        self, *args: str, stdin: str = "", env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(KILN), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env={**self.env, **(env or {})},
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--json", env=env).stdout)

    def into_closed_pipe(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Runs with stdout a pipe whose reader has already gone (`kiln ... | head`)."""
        read, write = os.pipe()
        os.close(read)
        try:
            return subprocess.run(
                [str(KILN), *args], stdout=write, stderr=subprocess.PIPE, env=self.env,
                timeout=60, check=False,
            )  # fmt: skip
        finally:
            os.close(write)


SPEC = """
name: cli foxes
prompt: "a {color} fox, {style}"
variables:
  color: [red, blue]
  style: [watercolor]
images_per_combination: 2
ratio: "1:1"
seed: 11
format: jpeg
tags: [cli]
"""


@pytest.mark.timeout(240)
def test_user_flow(stack: KilnStack, tmp_path: Path) -> None:
    """login, validate-only and create print one task shape, create --watch to completion
    (watch --exit-status 0), list, get in JSON and YAML alike, subtasks into a closed pipe
    end quietly, download with a manifest, image get, retry and cancel refused on a
    finished task, cancel of a running one (watch --exit-status 5, its table progress the
    share rendered, not 100%), delete (get marks it deleted), targets from a context, a
    clear error for a missing task, and `logout --everywhere` ending the session of
    another device within seconds."""
    email = f"cli-{uuid.uuid4().hex[:8]}@example.com"
    cli = Cli(stack, tmp_path / "config")
    registered = cli.run(
        "register", "--email", email, "--password-stdin", stdin=USER_PASSWORD + "\n"
    )
    assert f"registered {email}" in registered.stdout
    again = cli.run(
        "register", "--email", email, "--password-stdin", stdin=USER_PASSWORD, check=False
    )
    assert again.stderr.startswith("kiln: error: ALREADY_EXISTS")
    login = cli.run("login", "--email", email, "--password-stdin", stdin=USER_PASSWORD + "\n")
    assert f"logged in as {email}" in login.stdout
    credentials = tmp_path / "config" / "kiln" / "credentials.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert cli.json("whoami")["email"] == email

    spec = tmp_path / "foxes.yaml"
    spec.write_text(SPEC)
    preview = cli.json("task", "create", str(spec), "--validate-only")
    created = cli.run("task", "create", str(spec), "--watch", "--exit-status")
    assert "created task" in created.stdout
    assert "succeeded" in created.stdout.splitlines()[-1]
    task_id = created.stdout.split()[2]
    # One shape for a task whether previewed, created or read.
    assert set(preview) == set(cli.json("task", "get", task_id))
    assert (preview["id"], preview["total_images"]) == ("", 4)
    assert preview["eta"]
    assert cli.run("task", "watch", task_id, "--exit-status").returncode == 0
    # --subtasks: the batched watch shows every subtask once (the snapshot of a done task).
    lines = cli.run("task", "watch", task_id, "--subtasks", "-o", "json").stdout.splitlines()
    shown = [json.loads(line)["subtask"] for line in lines if line.startswith('{"subtask"')]
    assert sorted(s["index"] for s in shown) == [0, 1, 2, 3]
    assert {s["state"] for s in shown} == {"SUBTASK_STATE_SUCCEEDED"}
    assert json.loads(lines[-1])["state"] == "TASK_STATE_SUCCEEDED"
    table = cli.run("task", "watch", task_id, "--subtasks").stdout
    assert table.count(" succeeded\n") >= 4
    as_yaml = yaml.safe_load(cli.run("task", "get", task_id, "-o", "yaml").stdout)
    assert as_yaml == cli.json("task", "get", task_id)
    piped = cli.into_closed_pipe("task", "subtasks", task_id, "-o", "json")
    assert (piped.returncode, piped.stderr) == (0, b"")

    listed = cli.json("task", "list", "--search", "foxes")
    assert [t["id"] for t in listed] == [task_id]
    task = cli.json("task", "get", task_id)
    assert task["state"] == "TASK_STATE_SUCCEEDED"
    assert task["succeeded_count"] == 4
    subtasks = cli.json("task", "subtasks", task_id)
    assert len(subtasks) == 4

    download = tmp_path / "download"
    cli.run("task", "download", task_id, str(download))
    manifest = json.loads((download / "manifest.json").read_text())
    assert len(manifest["images"]) == 4
    assert {i["variables"]["color"] for i in manifest["images"]} == {"red", "blue"}
    for image in manifest["images"]:
        assert (download / image["file"]).stat().st_size > 0
        assert image["seed"] >= 11

    first = subtasks[0]["id"]
    cli.run("image", "get", first, "-o", str(tmp_path / "one.jpg"))
    assert (tmp_path / "one.jpg").read_bytes()[:2] == b"\xff\xd8"

    retried = cli.run("task", "retry", task_id, check=False)
    assert retried.returncode == 1
    assert retried.stderr.startswith("kiln: error: FAILED_PRECONDITION")

    finished = cli.run("task", "cancel", task_id, check=False)
    assert finished.stderr.startswith("kiln: error: FAILED_PRECONDITION")

    spec.write_text(SPEC.replace("images_per_combination: 2", "images_per_combination: 100"))
    big = cli.json("task", "create", str(spec))
    paused = cli.run("task", "pause", big["id"]).stdout
    assert "paused: nothing more starts until `kiln task resume" in paused
    assert cli.json("task", "priority", big["id"], "7")["priority"] == 7
    assert not cli.json("task", "resume", big["id"]).get("paused", False)
    cancelled = cli.json("task", "cancel", big["id"])
    assert cancelled["state"] == "TASK_STATE_CANCELLED"
    assert cancelled["succeeded_count"] < 200
    watched = cli.run("task", "watch", big["id"], "--exit-status", check=False)
    assert watched.returncode == 5, watched.stderr
    assert watched.stdout.splitlines()[-1] == f"task {big['id']} cancelled"
    done = cli.json("task", "get", big["id"])
    row = cli.run("task", "get", big["id"]).stdout.splitlines()[1].split()
    rendered = (done["succeeded_count"] + done["failed_count"]) / done["total_images"]
    assert row[-2] == f"{rendered:.0%}" != "100%"

    cli.run("task", "delete", task_id)
    assert [t["id"] for t in cli.json("task", "list")] == [big["id"]]
    deleted = cli.run("task", "get", task_id).stdout.splitlines()
    assert "  succeeded (deleted)  " in deleted[1]
    assert deleted[2].startswith("deleted:")
    assert cli.json("task", "get", task_id)["is_deleted"] is True

    # The same commands through a context instead of the environment.
    config_file = str(tmp_path / "contexts.yaml")
    in_context = Cli(stack, tmp_path / "config")
    in_context.env = {
        k: v for k, v in cli.env.items() if k not in {"KILN_TARGET", "KILN_AUTH_TARGET"}
    }
    in_context.env["KILN_CONFIG"] = config_file
    in_context.run(
        "config", "set-context", "stack", "--target", stack.tasks.target,
        "--auth-target", stack.auth.target,
    )  # fmt: skip
    assert in_context.json("task", "get", big["id"])["id"] == big["id"]

    missing = cli.run("task", "get", str(uuid.uuid4()), check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("kiln: error: NOT_FOUND")
    assert len(missing.stderr.strip().splitlines()) == 1

    other_device = Cli(stack, tmp_path / "other-device")
    other_device.run("login", "--email", email, "--password-stdin", stdin=USER_PASSWORD)
    assert "logged out everywhere" in cli.run("logout", "--everywhere").stdout
    deadline = time.monotonic() + 10
    while (ended := other_device.run("task", "list", check=False)).returncode == 0:
        assert time.monotonic() < deadline, "the other session still works"
        time.sleep(0.2)
    assert ended.stderr.startswith("kiln: error: UNAUTHENTICATED"), ended.stderr


@pytest.mark.timeout(180)
def test_admin_flow(stack: KilnStack, tmp_path: Path) -> None:
    """An admin lists, creates and updates users, creates an API key that a script then
    uses, sees queues and workers, pauses and resumes a queue; a plain user is refused."""
    user_email = f"plain-{uuid.uuid4().hex[:8]}@example.com"
    stack.token(user_email)
    admin = Cli(stack, tmp_path / "admin")
    admin.run("login", "--email", ADMIN_EMAIL, "--password-stdin", stdin=ADMIN_PASSWORD)

    users = admin.json("users", "list", "--search", "plain-")
    assert [u["email"] for u in users] == [user_email]
    user_id = users[0]["id"]
    updated = admin.json("users", "update", user_id, "--name", "Renamed")
    assert updated["display_name"] == "Renamed"
    made_email = f"made-{uuid.uuid4().hex[:8]}@example.com"
    made = admin.run(
        "users", "create", made_email, "--role", "admin", "--password-stdin", "--json",
        stdin=USER_PASSWORD,
    )  # fmt: skip
    assert json.loads(made.stdout)["role"] == "ROLE_ADMIN"
    made_cli = Cli(stack, tmp_path / "made")
    made_cli.run("login", "--email", made_email, "--password-stdin", stdin=USER_PASSWORD)

    created = admin.json("api-keys", "create", "ci-bot", "--role", "user", "--user-id", user_id)
    secret = created["secret"]
    script = admin.json("whoami", env={"KILN_API_KEY": secret})
    assert script["email"] == user_email
    keys = admin.json("api-keys", "list")
    assert any(k["name"] == "ci-bot" for k in keys)

    queues = admin.json("queues")
    assert {q["queue"] for q in queues} >= {"QUEUE_STANDARD"}
    workers = admin.json("workers")
    assert len(workers) >= 1
    assert "paused" in admin.run("queues", "pause", "standard").stdout
    paused = {q["queue"]: q["paused"] for q in admin.json("queues")}
    assert paused["QUEUE_STANDARD"] is True
    admin.run("queues", "resume", "standard")

    user = Cli(stack, tmp_path / "user")
    user.run("login", "--email", user_email, "--password-stdin", stdin=USER_PASSWORD)
    refused = user.run("workers", check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("kiln: error: PERMISSION_DENIED")


def test_not_logged_in_is_one_line(tmp_path: Path) -> None:
    """Without a login the CLI says what to do, with no traceback."""
    result = subprocess.run(
        [str(KILN), "task", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "kiln: error: not logged in: run `kiln login` (or set KILN_TOKEN / KILN_API_KEY)"
    )


GRID_SPEC = """
name: cli grid
prompt: "a {color} fox, {style}"
variables:
  color: [red, blue]
  style: [watercolor, ink]
ratio: "1:1"
"""


@pytest.mark.timeout(240)
def test_grid_and_slice_commands(stack: KilnStack, tmp_path: Path) -> None:
    """`task grid` prints values by state (and a rows x columns table, and JSON, also with
    --watch on a finished task); `--where` narrows `task subtasks`; a slice control on a
    finished task and an unknown value are one-line errors naming the problem; a malformed
    `--where` is a usage error."""
    cli = Cli(stack, tmp_path / "config")
    email = f"grid-{uuid.uuid4().hex[:8]}@example.com"
    cli.run("register", "--email", email, "--password-stdin", stdin=USER_PASSWORD + "\n")
    cli.run("login", "--email", email, "--password-stdin", stdin=USER_PASSWORD + "\n")
    spec = tmp_path / "grid.yaml"
    spec.write_text(GRID_SPEC)
    created = cli.run("task", "create", str(spec), "--watch", "--exit-status")
    task_id = created.stdout.split()[2]

    by_value = cli.run("task", "grid", task_id).stdout
    assert by_value.splitlines()[0].split() == [
        "COLOR", "TOTAL", "PENDING", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED",
        "HELD",
    ]  # fmt: skip
    assert by_value.splitlines()[1].split() == ["red", "2", "0", "0", "0", "2", "0", "0", "0"]
    table = cli.run("task", "grid", task_id, "--rows", "color", "--cols", "style").stdout
    assert table.splitlines()[1].split() == ["red", "1/1", "1/1"]
    as_json = cli.json("task", "grid", task_id, "--rows", "color", "--cols", "style")
    assert len(as_json["table"]["cells"]) == 4
    assert as_json["total"]["succeeded"] == 4
    watched = cli.run("task", "grid", task_id, "--watch", "-o", "json").stdout.splitlines()
    assert json.loads(watched[-1])["total"]["succeeded"] == 4

    red = cli.json("task", "subtasks", task_id, "--where", "color=red")
    assert {s["variable_values"]["color"] for s in red} == {"red"} and len(red) == 2
    finished = cli.run("task", "cancel", task_id, "--where", "color=red", check=False)
    assert finished.returncode == 1
    assert finished.stderr.startswith("kiln: error: FAILED_PRECONDITION")
    unknown = cli.run("task", "retry", task_id, "--where", "color=mauve", check=False)
    assert unknown.returncode == 1 and "variable_filters[0].value" in unknown.stderr
    malformed = cli.run("task", "pause", task_id, "--where", "color", check=False)
    assert malformed.returncode == 2 and "VARIABLE=VALUE" in malformed.stderr
