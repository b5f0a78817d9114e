"""`kiln`: a thin command-line client over Kiln's gRPC API.

Targets come from `--target` / `--auth-target`, else KILN_TARGET / KILN_AUTH_TARGET, else
the local defaults of `make run`. Channels are plaintext unless a TLS option is given
(`--tls`, `--ca`, `--cert`/`--key`, `--insecure`, or their KILN_* variables). Read
commands take `--json` for scripts. Errors print one line with the gRPC code and exit 1
(2 for usage errors); never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from kiln.cli import auth_commands, errors, task_commands
from kiln.cli.session import DEFAULT_AUTH_TARGET, DEFAULT_TASKS_TARGET, Session
from kiln.cli.transport import Transport

Handler = Callable[[Session, argparse.Namespace], None]


def _command(
    parent: Any, name: str, handler: Handler, help_text: str, json_flag: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = parent.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="kiln", description="Kiln batch image generation.")
    parser.add_argument(
        "--target",
        default=os.environ.get("KILN_TARGET", DEFAULT_TASKS_TARGET),
        help="tasks service host:port (KILN_TARGET)",
    )
    parser.add_argument(
        "--auth-target",
        default=os.environ.get("KILN_AUTH_TARGET", DEFAULT_AUTH_TARGET),
        help="auth service host:port (KILN_AUTH_TARGET)",
    )
    _transport_options(parser)
    top = parser.add_subparsers(dest="command", required=True)
    _auth_commands(top)
    _task_commands(top)
    _admin_commands(top)
    return parser


def _flag(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in {"1", "true", "yes", "on"}


def _transport_options(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group("TLS (plaintext when none is given)")
    tls.add_argument(
        "--tls",
        action="store_true",
        default=_flag("KILN_TLS"),
        help="use TLS, verifying the server with the system's CA bundle (KILN_TLS=1)",
    )
    tls.add_argument(
        "--ca",
        metavar="FILE",
        default=os.environ.get("KILN_CA", ""),
        help="use TLS, verifying the server with this PEM CA bundle (KILN_CA)",
    )
    tls.add_argument(
        "--cert",
        metavar="FILE",
        default=os.environ.get("KILN_CLIENT_CERT", ""),
        help="PEM client certificate for servers that require mTLS (KILN_CLIENT_CERT)",
    )
    tls.add_argument(
        "--key",
        metavar="FILE",
        default=os.environ.get("KILN_CLIENT_KEY", ""),
        help="PEM private key of --cert (KILN_CLIENT_KEY)",
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        default=_flag("KILN_INSECURE"),
        help="use TLS but trust whatever certificate the server presents: encrypted, "
        "not authenticated; for test setups only (KILN_INSECURE=1)",
    )
    tls.add_argument(
        "--server-name",
        metavar="NAME",
        default=os.environ.get("KILN_SERVER_NAME", ""),
        help="name to check the server certificate against instead of the target's host, "
        "e.g. behind kubectl port-forward (KILN_SERVER_NAME)",
    )


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


def _task_commands(top: Any) -> None:
    task = top.add_parser("task", help="create and follow tasks").add_subparsers(
        dest="task_command", required=True
    )
    create = _command(task, "create", task_commands.create, "create a task from a YAML spec")
    create.add_argument("spec", help="YAML spec file (format: clients/cli/README.md)")
    create.add_argument("--watch", action="store_true", help="follow the task until it ends")
    create.add_argument("--validate-only", action="store_true", help="check and estimate only")
    for name, handler, text in [
        ("watch", task_commands.watch, "follow a task live until it ends"),
        ("get", task_commands.get, "show a task"),
        ("cancel", task_commands.cancel, "cancel a task"),
        ("retry", task_commands.retry, "re-queue failed and cancelled subtasks"),
        ("pause", task_commands.pause, "hold a task's waiting subtasks (running ones finish)"),
        ("resume", task_commands.resume, "dispatch a paused task's subtasks again"),
    ]:
        _command(task, name, handler, text).add_argument("task_id")
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
    download = _command(
        task, "download", task_commands.download, "save all images and a manifest", False
    )
    download.add_argument("task_id")
    download.add_argument("directory")

    image = top.add_parser("image", help="images").add_subparsers(
        dest="image_command", required=True
    )
    image_get = _command(image, "get", task_commands.image_get, "save one subtask's image")
    image_get.add_argument("subtask_id")
    image_get.add_argument("-o", "--output", required=True)
    image_get.add_argument("--thumbnail", action="store_true")


def _admin_commands(top: Any) -> None:
    queues = _command(top, "queues", task_commands.queues, "queue statistics (admin)")
    queues.add_argument("action", nargs="?", choices=["stats", "pause", "resume"], default="stats")
    queues.add_argument("queue", nargs="?")
    _command(top, "workers", task_commands.workers, "live workers (admin)")

    users = top.add_parser("users", help="manage users (admin)").add_subparsers(
        dest="users_command", required=True
    )
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

    keys = top.add_parser("api-keys", help="manage API keys").add_subparsers(
        dest="keys_command", required=True
    )
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


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `kiln`."""
    args = build_parser().parse_args(argv)
    if args.command == "queues" and args.action != "stats" and not args.queue:
        print(f"kiln: error: queues {args.action} needs a queue name", file=sys.stderr)
        sys.exit(2)
    transport = Transport(
        tls=args.tls,
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.key,
        insecure=args.insecure,
        server_name=args.server_name,
    )
    session = Session(tasks_target=args.target, auth_target=args.auth_target, transport=transport)
    try:
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
