"""structlog set-up: JSON lines in production, a console renderer on a TTY.

Standard-library loggers (grpc, sqlalchemy, alembic, nats) are routed through the same
processors, so every line a process writes has one shape.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_QUIET_LOGGERS = (
    "asyncio",
    "sqlalchemy.engine",
    "alembic.runtime.migration",
    "nats",
    "httpx",
    "httpcore",
)


def configure_logging(service: str, level: str = "info", fmt: str = "auto") -> None:
    """Configures structlog and stdlib logging once per process, binding `service=`."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_service(service),
    ]
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _exception_formatter(use_console),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))


def _add_service(service: str) -> Any:
    # A processor rather than a bound context variable: gRPC and NATS callbacks run in tasks
    # whose context was copied before any binding could happen.
    def add(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("service", service)
        return event

    return add


def _exception_formatter(use_console: bool) -> Any:
    # The console renderer prints tracebacks itself; JSON needs them as a string field.
    if use_console:
        return lambda _logger, _name, event: event
    return structlog.processors.format_exc_info
