"""The `kiln` command's options, output shapes, contexts and completion, without a server."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln.cli import config, main, output, task_commands
from kiln.cli.errors import CliError
from kiln.tasks.v1 import tasks_pb2

KILN = Path(sys.executable).with_name("kiln")
# Commands that print no resource: they take no -o (image get's -o is the file it writes).
NO_FORMAT = {
    ("logout",),
    ("task", "delete"),
    ("task", "download"),
    ("image", "get"),
    ("api-keys", "revoke"),
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test gets its own config file and none of the developer's KILN_* variables."""
    for name in list(os.environ):
        if name.startswith("KILN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KILN_CONFIG", str(tmp_path / "kiln" / "config.yaml"))


def _leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Any:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _leaves(child, (*path, name))
            return
    yield path, parser


def _kiln(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KILN), *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("XDG_")},
    )


def test_connection_flags_work_before_and_after_the_subcommand() -> None:
    """--target and the TLS flags are taken wherever they stand, and a flag given before
    the subcommand is not reset by the subcommand's parser."""
    parser = main.build_parser()
    for argv in (
        ["--target", "a:1", "--insecure", "task", "get", "t1"],
        ["task", "--target", "a:1", "--insecure", "get", "t1"],
        ["task", "get", "t1", "--target", "a:1", "--insecure"],
        ["--insecure", "task", "get", "--target", "a:1", "t1"],
    ):
        args = parser.parse_args(argv)
        assert (args.target, args.insecure, args.task_id) == ("a:1", True, "t1"), argv
    untouched = parser.parse_args(["task", "get", "t1"])
    assert (untouched.target, untouched.insecure, untouched.context) == (None, None, None)


def test_every_read_command_takes_output_formats_and_json_is_an_alias() -> None:
    """Every command printing a resource takes -o json|yaml|table (default table), and
    --json still means -o json for existing scripts."""
    parser = main.build_parser()
    checked = 0
    for path, leaf in _leaves(parser):
        if leaf.get_default("handler") is None or path in NO_FORMAT:
            continue
        options = {o for a in leaf._actions for o in a.option_strings}
        assert {"-o", "--output", "--json"} <= options, path
        checked += 1
    assert checked >= 20
    for flags, expected in (([], "table"), (["--json"], "json"), (["-o", "yaml"], "yaml")):
        args = parser.parse_args(["task", "list", *flags])
        assert args.output_format == expected
    image = parser.parse_args(["image", "get", "s1", "-o", "x.png", "--json"])
    assert (image.output, image.output_format) == ("x.png", "json")


def test_json_and_yaml_carry_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    """-o json and -o yaml print the same document: proto field names, every field."""
    task = tasks_pb2.Task(id="t1", task_name="foxes", total_images=4, succeeded_count=4)
    output.show("json", task, lambda: None)
    as_json = json.loads(capsys.readouterr().out)
    output.show("yaml", task, lambda: None)
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    assert as_json == as_yaml
    assert as_json["task_name"] == "foxes"
    assert as_json["failed_count"] == 0


def test_settings_resolve_flag_then_env_then_context_then_default(tmp_path: Path) -> None:
    """Each connection setting comes from the flag, else its KILN_* variable, else the
    chosen context, else the local default."""
    file = config.Config(
        current_context="prod",
        contexts={
            "prod": {"target": "prod:443", "auth-target": "auth.prod:443", "insecure": True},
            "staging": {"target": "staging:443", "ca": "/ca.pem"},
        },
    )
    from_context = config.resolve({}, {}, file)
    assert from_context["target"] == "prod:443"
    assert from_context["insecure"] is True
    assert from_context["ca"] == ""
    from_env = config.resolve({}, {"KILN_TARGET": "env:1", "KILN_INSECURE": "0"}, file)
    assert (from_env["target"], from_env["auth-target"]) == ("env:1", "auth.prod:443")
    assert from_env["insecure"] is False
    from_flag = config.resolve({"target": "flag:1"}, {"KILN_TARGET": "env:1"}, file)
    assert from_flag["target"] == "flag:1"
    other = config.resolve({}, {}, file, "staging")
    assert (other["target"], other["ca"], other["auth-target"]) == (
        "staging:443",
        "/ca.pem",
        "127.0.0.1:50051",
    )
    defaults = config.resolve({}, {}, config.Config())
    assert defaults["target"] == "127.0.0.1:50052"
    assert defaults["tls"] is False


def test_context_commands_keep_a_private_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """set-context creates (and the first becomes current) or updates only the given
    settings, use-context switches, get-contexts and current-context show them, the file
    is mode 0600 with TLS files stored absolute, and the run uses the context's targets."""
    path = tmp_path / "kiln" / "config.yaml"
    main.main(["config", "set-context", "prod", "--target", "prod:443", "--ca", "ca.pem"])
    main.main(["config", "set-context", "local", "--target", "127.0.0.1:1", "--insecure"])
    main.main(["config", "set-context", "local", "--no-insecure", "--auth-target", "a:2"])
    assert path.stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    main.main(["config", "current-context"])
    assert capsys.readouterr().out == "prod\n"
    main.main(["config", "use-context", "local"])
    capsys.readouterr()
    main.main(["config", "get-contexts", "-o", "json"])
    contexts = {c["name"]: c for c in json.loads(capsys.readouterr().out)}
    assert contexts["local"] == {
        "name": "local", "current": True, "target": "127.0.0.1:1", "auth-target": "a:2",
    }  # fmt: skip
    assert contexts["prod"]["ca"] == str(Path("ca.pem").absolute())
    main.main(["config", "get-contexts"])
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["CURRENT", "NAME", "TARGET", "AUTH-TARGET", "TLS"]
    assert table[1].split() == ["*", "local", "127.0.0.1:1", "a:2", "plaintext"]
    args = main.build_parser().parse_args(["task", "list"])
    assert main.connection(args, {"KILN_CONFIG": str(path)})["target"] == "127.0.0.1:1"
    args = main.build_parser().parse_args(["task", "list", "--context", "prod"])
    assert main.connection(args, {"KILN_CONFIG": str(path)})["target"] == "prod:443"


def test_unknown_context_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Switching to, or running with, a context that does not exist says which exist."""
    main.main(["config", "set-context", "prod", "--target", "prod:443"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main.main(["config", "use-context", "prdo"])
    assert exited.value.code == 1
    assert capsys.readouterr().err == "kiln: error: no context named 'prdo' (known: prod)\n"
    with pytest.raises(SystemExit):
        main.main(["--context", "nope", "task", "list"])
    assert "no context named 'nope'" in capsys.readouterr().err


def test_version_and_completion_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    """--version names the package version; `kiln completion bash|zsh` prints scripts that
    the shell accepts and that know the subcommands."""
    with pytest.raises(SystemExit) as exited:
        main.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("kiln 0.")
    for shell, checker in (("bash", ["bash", "-n"]), ("zsh", None)):
        main.main(["completion", shell])
        script = capsys.readouterr().out
        for word in ("set-context", "subtasks", "--exit-status", "--auth-target"):
            assert word in script, (shell, word)
        if checker:
            subprocess.run([*checker], input=script, text=True, check=True, timeout=30)


def test_closed_pipe_ends_quietly() -> None:
    """When the reader closes the pipe early (`kiln ... | head`), the CLI exits 0 with
    nothing on stderr, not a BrokenPipeError traceback."""
    for args in (["completion", "bash"], ["config", "get-contexts", "-o", "yaml"]):
        read, write = os.pipe()
        os.close(read)  # closed before the CLI writes a byte
        process = subprocess.run(
            [str(KILN), *args], stdout=write, stderr=subprocess.PIPE, timeout=60, check=False
        )
        os.close(write)
        assert (process.returncode, process.stderr) == (0, b""), args


def test_login_without_a_terminal_says_how() -> None:
    """Without a TTY, `kiln login` does not send an empty password: it fails with one line
    naming --password-stdin (exit 2); --password-stdin with nothing on stdin says so."""
    asked = _kiln("login", "--email", "me@example.com")
    assert asked.returncode == 2
    assert asked.stderr.count("\n") == 1
    assert asked.stderr.startswith("kiln: error: no terminal to ask for the password")
    assert "--password-stdin" in asked.stderr
    no_email = _kiln("login", "--password-stdin", stdin="secret\n")
    assert no_email.stderr == "kiln: error: no terminal to ask for the email: give --email\n"
    empty = _kiln("login", "--email", "me@example.com", "--password-stdin", stdin="")
    assert (empty.returncode, empty.stderr) == (2, "kiln: error: no password on stdin\n")


def test_cancelled_and_deleted_tasks_read_as_they_are(capsys: pytest.CaptureFixture[str]) -> None:
    """A task cancelled after 3 of 200 images shows 2% (not the server's 100% of ended
    subtasks) and a deleted task is marked in its state and by a line."""
    task = tasks_pb2.Task(
        id="t1",
        task_name="big",
        state=tasks_pb2.TASK_STATE_CANCELLED,
        total_images=200,
        succeeded_count=3,
        failed_count=1,
        cancelled_count=196,
        progress=1.0,
        is_deleted=True,
    )
    task_commands.task_table(task)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[2:7] == ["cancelled", "(deleted)", "3/200", "1", "2%"]
    assert lines[2] == "deleted: this task no longer appears in `kiln task list`"
    stream = io.StringIO()
    line = output.ProgressLine(stream)
    line.update(3, 1, 200, "cancelled", cancelled=196)
    assert stream.getvalue().startswith("[" + "." * 30 + "] 3/200 done, 1 failed, 196 cancelled")


def test_exit_status_follows_how_the_task_ended() -> None:
    """--exit-status: 0 succeeded, 3 failed, 4 partially failed, 5 cancelled, and an
    error (1) when the watch stopped before the task ended."""
    codes = {}
    for state in (
        tasks_pb2.TASK_STATE_SUCCEEDED,
        tasks_pb2.TASK_STATE_FAILED,
        tasks_pb2.TASK_STATE_PARTIALLY_FAILED,
        tasks_pb2.TASK_STATE_CANCELLED,
    ):
        try:
            task_commands._finish_watch(tasks_pb2.Task(state=state), exit_status=True)
            codes[state] = 0
        except SystemExit as exited:
            codes[state] = int(str(exited.code))
    assert list(codes.values()) == [0, 3, 4, 5]
    running = tasks_pb2.Task(state=tasks_pb2.TASK_STATE_RUNNING)
    with pytest.raises(CliError, match="ended before the task did"):
        task_commands._finish_watch(running, exit_status=True)
    task_commands._finish_watch(running, exit_status=False)


def test_where_filters_parse_into_variable_filters() -> None:
    """`--where NAME=VALUE` is repeatable on the slice commands and keeps any `=` in the
    value; `task grid` takes --rows/--cols/--watch."""
    parser = main.build_parser()
    for command in ("cancel", "retry", "pause", "resume", "subtasks"):
        args = parser.parse_args(["task", command, "t1", "--where", "a=b", "--where", "r=16:9=x"])
        assert [(f.name, f.value) for f in args.where] == [("a", "b"), ("r", "16:9=x")]
    grid = parser.parse_args(["task", "grid", "t1", "--rows", "a", "--cols", "b", "--watch"])
    assert (grid.rows, grid.cols, grid.watch) == ("a", "b", True)
    for bad in ("novalue", "=x"):
        with pytest.raises(SystemExit) as caught:
            parser.parse_args(["task", "cancel", "t1", "--where", bad])
        assert caught.value.code == 2
