"""The command line every service shares: `python -m <service> [serve|migrate|...]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from kiln.common import config, logging, metrics, runner
from kiln.common.settings import LogSettings

C = TypeVar("C", bound=LogSettings)
ExtraCommand = tuple[str, Callable[[Sequence[str]], None]]
"""A service's own command: (one-line help, handler taking the remaining arguments)."""


def service_main(
    service: str,
    config_class: type[C],
    serve: Callable[[C], Coroutine[Any, Any, None]],
    migrate: Callable[[C], None] | None = None,
    *,
    argv: Sequence[str] | None = None,
    extra_commands: Mapping[str, ExtraCommand] | None = None,
) -> None:
    """Parses the command, loads config (exiting with the bad variable's name), sets up
    logging, and runs `serve` on uvloop or `migrate`; `extra_commands` get the rest of the
    arguments and do their own parsing."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    extras = dict(extra_commands or {})
    if arguments and arguments[0] in extras:
        extras[arguments[0]][1](arguments[1:])
        return
    commands = ["serve", "migrate"] if migrate is not None else ["serve"]
    listed = "".join(f"  {name:<14} {text}\n" for name, (text, _) in extras.items())
    parser = argparse.ArgumentParser(
        prog=f"python -m {service}",
        description=f"Kiln {service} service.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"more commands (each has --help):\n{listed}" if extras else None,
    )
    parser.add_argument("command", nargs="?", default="serve", choices=commands)
    args = parser.parse_args(arguments)
    settings = config.load_or_exit(config_class)
    logging.configure_logging(service, settings.log_level, settings.log_format)
    if args.command == "migrate" and migrate is not None:
        migrate(settings)
    else:
        metrics.set_build_info(service)
        try:
            runner.run(serve(settings))
        except config.ConfigError as exc:  # TLS files are checked as the server is built
            print(f"configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
