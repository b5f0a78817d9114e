"""The command line every service shares: `python -m <service> [serve|migrate]`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from kiln.common import config, logging, runner
from kiln.common.settings import LogSettings

C = TypeVar("C", bound=LogSettings)


def service_main(
    service: str,
    config_class: type[C],
    serve: Callable[[C], Coroutine[Any, Any, None]],
    migrate: Callable[[C], None] | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Parses the command, loads config (exiting with the bad variable's name), sets up
    logging, and runs `serve` on uvloop or `migrate`."""
    commands = ["serve", "migrate"] if migrate is not None else ["serve"]
    parser = argparse.ArgumentParser(
        prog=f"python -m {service}", description=f"Kiln {service} service."
    )
    parser.add_argument("command", nargs="?", default="serve", choices=commands)
    args = parser.parse_args(argv)
    settings = config.load_or_exit(config_class)
    logging.configure_logging(service, settings.log_level, settings.log_format)
    if args.command == "migrate" and migrate is not None:
        migrate(settings)
    else:
        runner.run(serve(settings))
