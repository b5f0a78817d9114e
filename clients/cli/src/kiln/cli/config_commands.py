"""`kiln config ...`: named contexts, and `kiln completion` (no server needed)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from kiln.cli import config, output
from kiln.cli.errors import CliError

# Settings naming files are stored absolute, so a context works from any folder.
_FILE_SETTINGS = {"ca", "cert", "key"}


def set_context(args: argparse.Namespace) -> None:
    """Creates or updates a context; only the settings given change."""
    path = config.config_path()
    current = config.Config.load(path)
    values: dict[str, Any] = {}
    for setting in config.SETTINGS:
        value = getattr(args, "context_" + setting.dest)
        if value and setting.key in _FILE_SETTINGS:
            value = str(Path(value).expanduser().absolute())
        values[setting.key] = value
    config.set_context(current, args.name, values)
    if not current.current_context:
        current.current_context = args.name
    current.save(path)
    print(f"context {args.name} saved in {path}")


def use_context(args: argparse.Namespace) -> None:
    """Makes a context the current one."""
    path = config.config_path()
    current = config.Config.load(path)
    current.context(args.name)
    current.current_context = args.name
    current.save(path)
    print(f"switched to context {args.name}")


def delete_context(args: argparse.Namespace) -> None:
    """Removes a context."""
    path = config.config_path()
    current = config.Config.load(path)
    current.context(args.name)
    del current.contexts[args.name]
    if current.current_context == args.name:
        current.current_context = ""
    current.save(path)
    print(f"deleted context {args.name}")


def current_context(args: argparse.Namespace) -> None:
    """Prints the current context's name."""
    name = config.Config.load(config.config_path()).current_context
    if not name:
        raise CliError("no current context: `kiln config use-context NAME`")
    print(name)


def get_contexts(args: argparse.Namespace) -> None:
    """Lists contexts: name, whether current, and their settings."""
    current = config.Config.load(config.config_path())
    rows = [
        {"name": name, "current": name == current.current_context, **settings}
        for name, settings in sorted(current.contexts.items())
    ]
    output.show(
        args.output_format,
        rows,
        lambda: output.print_table(
            ["CURRENT", "NAME", "TARGET", "AUTH-TARGET", "TLS"],
            [
                (
                    "*" if row["current"] else "",
                    row["name"],
                    row.get("target", ""),
                    row.get("auth-target", ""),
                    _tls_summary(row),
                )
                for row in rows
            ],
        ),
    )


def _tls_summary(settings: dict[str, Any]) -> str:
    if settings.get("insecure"):
        return "insecure"
    if settings.get("ca"):
        return "ca " + os.path.basename(str(settings["ca"]))
    if settings.get("tls") or settings.get("cert"):
        return "system roots" if not settings.get("cert") else "mtls"
    return "plaintext"


def add_commands(top: Any) -> None:
    """The `config` command tree."""
    commands = top.add_parser(
        "config", help="named contexts: targets and TLS options kept in a file"
    ).add_subparsers(dest="config_command", required=True)
    setter = commands.add_parser(
        "set-context",
        help="create or update a context (only the given settings change)",
        description="Create or update a context; only the given settings change. "
        "The first context made becomes the current one.",
    )
    setter.set_defaults(local_handler=set_context)
    setter.add_argument("name")
    for setting in config.SETTINGS:
        if setting.is_switch:
            setter.add_argument(
                setting.flag,
                dest="context_" + setting.dest,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=setting.help,
            )
        else:
            setter.add_argument(
                setting.flag,
                dest="context_" + setting.dest,
                metavar="VALUE" if setting.key not in _FILE_SETTINGS else "FILE",
                default=None,
                help=f"{setting.help} (empty removes it)",
            )
    for name, handler, text in [
        ("use-context", use_context, "make a context the current one"),
        ("delete-context", delete_context, "remove a context"),
    ]:
        command = commands.add_parser(name, help=text, description=text)
        command.set_defaults(local_handler=handler)
        command.add_argument("name")
    getter = commands.add_parser("get-contexts", help="list contexts")
    getter.set_defaults(local_handler=get_contexts)
    output.add_format_options(getter)
    commands.add_parser("current-context", help="print the current context").set_defaults(
        local_handler=current_context
    )
