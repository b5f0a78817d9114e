"""`kiln`: a thin command-line client over Kiln's gRPC API.

Connection settings (targets and TLS options) resolve flag > KILN_* variable > context
(`kiln config`) > the local defaults of `make run`; the flags work before or after the
subcommand. Channels are plaintext unless a TLS option is given. Read commands take
`-o json|yaml|table` (`--json` is `-o json`). Errors print one line with the gRPC code and
exit 1 (2 for usage errors); never a traceback. A reader closing the pipe (`| head`) ends
the CLI quietly with exit code 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

import grpc
import shtab

from kiln.cli import auth_commands, config, config_commands, errors, output, task_commands
from kiln.cli.session import Session
from kiln.cli.transport import Transport

Handler = Callable[[Session, argparse.Namespace], None]
SHELLS = ("bash", "zsh", "tcsh")


def _connection_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """--context, the targets and the TLS flags. `default` is None on the top-level parser
    and SUPPRESS on subcommands, so a flag given after the subcommand is kept and one given
    before it is not overwritten."""
    group = parser.add_argument_group(
        "connection (flag > KILN_* variable > context > default; TLS when any TLS option is set)"
    )
    group.add_argument(
        "--context",
        default=default,
        metavar="NAME",
        help="use this context for one run instead of the current one (KILN_CONTEXT)",
    )
    for setting in config.SETTINGS:
        if setting.is_switch:
            group.add_argument(
                setting.flag,
                action="store_true",
                default=default,
                help=f"{setting.help} ({setting.variable}=1)",
            )
        else:
            metavar = "HOST:PORT" if "target" in setting.key else "VALUE"
            if setting.key in ("ca", "cert", "key"):
                metavar = "FILE"
            action = group.add_argument(
                setting.flag,
                default=default,
                metavar=metavar,
                help=f"{setting.help} ({setting.variable})",
            )
            if metavar == "FILE":
                action.complete = shtab.FILE  # type: ignore[attr-defined]


def _subcommand_parents() -> list[argparse.ArgumentParser]:
    parent = argparse.ArgumentParser(add_help=False)
    _connection_options(parent, argparse.SUPPRESS)
    return [parent]


def _command(
    parent: Any, name: str, handler: Handler, help_text: str, json_flag: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(
        name, help=help_text, description=help_text, parents=_subcommand_parents()
    )
    parser.set_defaults(handler=handler, output_format="table")
    if json_flag:
        output.add_format_options(parser)
    return parser


def _group(top: Any, name: str, help_text: str, dest: str) -> Any:
    """An intermediate command (`task`, `users`, ...) whose subcommands are required."""
    parser = top.add_parser(name, help=help_text, parents=_subcommand_parents())
    return parser.add_subparsers(dest=dest, required=True)


def _version() -> str:
    try:
        return metadata.version("kiln-cli")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln batch image generation.")
    parser.add_argument("--version", action="version", version=f"kiln {_version()}")
    _connection_options(parser, None)
    top = parser.add_subparsers(dest="command", required=True)
    _auth_commands(top)
    _task_commands(top)
    _admin_commands(top)
    config_commands.add_commands(top)
    completion = top.add_parser(
        "completion",
        help="print a shell completion script",
        description="Print a completion script: `source <(kiln completion bash)` in ~/.bashrc, "
        "or `kiln completion zsh > ~/.zfunc/_kiln` with ~/.zfunc on $fpath.",
    )
    completion.add_argument("shell", choices=SHELLS)
    completion.set_defaults(local_handler=_print_completion)
    return parser


def _print_completion(args: argparse.Namespace) -> None:
    print(shtab.complete(build_parser(), shell=args.shell))


def connection(args: argparse.Namespace, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The resolved connection settings of this run (see `config.resolve`)."""
    env = dict(os.environ) if env is None else env
    path = config.config_path(env)
    context_name = getattr(args, "context", None) or env.get("KILN_CONTEXT", "")
    return config.resolve(vars(args), env, config.Config.load(path), context_name)


def _auth_commands(top: Any) -> None:
    register = _command(top, "register", auth_commands.register, "create an account")
    register.add_argument("--email")
    register.add_argument("--name", help="display name (default: the email's local part)")
    register.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )
    login = _command(top, "login", auth_commands.login, "sign in and keep the tokens")
    login.add_argument("--email")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument(
        "--api-key-stdin", action="store_true", help="sign in with an API key from stdin"
    )
    logout = _command(
        top, "logout", auth_commands.logout, "revoke and forget the stored tokens", False
    )
    logout.add_argument(
        "--everywhere",
        action="store_true",
        help="end every session of this account, on every device, within seconds",
    )
    _command(top, "whoami", auth_commands.whoami, "show the signed-in user")


def _where_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--where",
        action="append",
        type=task_commands.variable_filter,
        metavar="VARIABLE=VALUE",
        help="only the subtasks whose variable has this value (repeatable; all must match)",
    )


def _task_commands(top: Any) -> None:
    task = _group(top, "task", "create and follow tasks", "task_command")
    create = _command(task, "create", task_commands.create, "create a task from a YAML spec")
    create.add_argument(
        "spec", help="YAML spec file (format: clients/cli/README.md)"
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    create.add_argument("--watch", action="store_true", help="follow the task until it ends")
    _exit_status_option(create)
    _subtasks_option(create)
    create.add_argument("--validate-only", action="store_true", help="check and estimate only")
    watch = _command(task, "watch", task_commands.watch, "follow a task live until it ends")
    watch.add_argument("task_id")
    _exit_status_option(watch)
    _subtasks_option(watch)
    _command(task, "get", task_commands.get, "show a task").add_argument("task_id")
    for name, handler, text in [
        ("cancel", task_commands.cancel, "cancel a task, or a slice's waiting subtasks"),
        ("retry", task_commands.retry, "re-queue failed and cancelled subtasks (of a slice)"),
        ("pause", task_commands.pause, "hold waiting subtasks (of a slice); running ones finish"),
        ("resume", task_commands.resume, "dispatch paused subtasks again (without --where: all)"),
    ]:
        control = _command(task, name, handler, text)
        control.add_argument("task_id")
        _where_option(control)
    grid = _command(
        task, "grid", task_commands.grid, "a task's subtasks by variable value and state"
    )
    grid.add_argument("task_id")
    grid.add_argument("--rows", metavar="VARIABLE", help="cross two variables: this one as rows")
    grid.add_argument("--cols", metavar="VARIABLE", help="and this one as columns")
    grid.add_argument("--watch", action="store_true", help="redraw live until the task ends")
    reprioritize = _command(
        task, "priority", task_commands.priority, "change a waiting task's priority"
    )
    reprioritize.add_argument("task_id")
    reprioritize.add_argument("priority", type=int, help="0..9, higher goes first")
    _command(task, "delete", task_commands.delete, "soft-delete a task", False).add_argument(
        "task_id"
    )
    listing = _command(task, "list", task_commands.list_tasks, "list tasks, newest first")
    listing.add_argument("--state", action="append", choices=sorted(task_commands.STATES))
    listing.add_argument("--tag")
    listing.add_argument("--search")
    listing.add_argument("--owner", help="owner id (admins)")
    listing.add_argument("--limit", type=int, default=50)
    subtasks = _command(task, "subtasks", task_commands.subtasks, "list a task's subtasks")
    subtasks.add_argument("task_id")
    subtasks.add_argument("--state", action="append", choices=sorted(task_commands.SUBTASK_STATES))
    _where_option(subtasks)
    download = _command(
        task, "download", task_commands.download, "save all images and a manifest", False
    )
    download.add_argument("task_id")
    download.add_argument("directory").complete = shtab.DIRECTORY  # type: ignore[attr-defined]

    image = _group(top, "image", "images", "image_command")
    # `-o` here is the file to write, as it always was; `--json` prints the image metadata.
    image_get = _command(
        image, "get", task_commands.image_get, "save one subtask's image", json_flag=False
    )
    image_get.add_argument(
        "--json", dest="output_format", action="store_const", const="json", help="print JSON"
    )
    image_get.add_argument("subtask_id")
    image_get.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="where to save the image"
    ).complete = shtab.FILE  # type: ignore[attr-defined]
    image_get.add_argument("--thumbnail", action="store_true")


def _admin_commands(top: Any) -> None:
    queues = _command(top, "queues", task_commands.queues, "queue statistics (admin)")
    queues.add_argument("action", nargs="?", choices=["stats", "pause", "resume"], default="stats")
    queues.add_argument("queue", nargs="?")
    _command(top, "workers", task_commands.workers, "live workers (admin)")

    users = _group(top, "users", "manage users (admin)", "users_command")
    users_list = _command(users, "list", auth_commands.users_list, "list users")
    users_list.add_argument("--search")
    users_list.add_argument("--limit", type=int, default=100)
    _command(users, "get", auth_commands.users_get, "show a user").add_argument("user_id")
    create = _command(users, "create", auth_commands.users_create, "create an account")
    create.add_argument("email")
    create.add_argument("--name", help="display name (default: the email's local part)")
    create.add_argument("--role", choices=sorted(auth_commands.ROLES), default="user")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the initial password from stdin"
    )
    update = _command(users, "update", auth_commands.users_update, "change a user")
    update.add_argument("user_id")
    update.add_argument("--role", choices=sorted(auth_commands.ROLES))
    update.add_argument("--active", choices=["true", "false"])
    update.add_argument("--name")

    keys = _group(top, "api-keys", "manage API keys", "keys_command")
    key_create = _command(keys, "create", auth_commands.api_keys_create, "create an API key")
    key_create.add_argument("name")
    key_create.add_argument("--role", choices=sorted(auth_commands.ROLES), default="user")
    key_create.add_argument("--user-id", help="service account user id (admins)")
    key_create.add_argument("--expires-in-days", type=int)
    key_list = _command(keys, "list", auth_commands.api_keys_list, "list API keys")
    key_list.add_argument("--all", action="store_true", help="include revoked keys")
    _command(
        keys, "revoke", auth_commands.api_keys_revoke, "revoke an API key", False
    ).add_argument("key_id")


def _subtasks_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--subtasks",
        action="store_true",
        help="while watching, also show each subtask as it ends (table: one line each; "
        'json/yaml: a {"subtask": ...} document per change)',
    )


def _exit_status_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--exit-status",
        action="store_true",
        help="exit with the task's outcome: 0 succeeded, 3 failed, 4 partially failed, "
        "5 cancelled (1 and 2 remain CLI and usage errors)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `kiln`."""
    try:
        _run(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `head`) has what it wanted: stop quietly. Point stdout at
        # /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _run(argv: Sequence[str] | None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", "") == "queues" and args.action != "stats" and not args.queue:
        parser.error(f"queues {args.action} needs a queue name")
    try:
        if local_handler := getattr(args, "local_handler", None):
            local_handler(args)
            return
        settings = connection(args)
        transport = Transport(
            tls=settings["tls"],
            ca_file=settings["ca"],
            cert_file=settings["cert"],
            key_file=settings["key"],
            insecure=settings["insecure"],
            server_name=settings["server-name"],
        )
        session = Session(
            tasks_target=settings["target"], auth_target=settings["auth-target"],
            transport=transport,
        )  # fmt: skip
        transport.check()
        args.handler(session, args)
    except errors.CliError as error:
        print(f"kiln: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except grpc.RpcError as error:
        print(f"kiln: error: {errors.describe(error)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
