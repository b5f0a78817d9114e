"""structlog set-up: JSON lines in production, a console renderer on a TTY.

Standard-library loggers (grpc, sqlalchemy, alembic, nats) are routed through the same
processors, so every line a process writes has one shape.
"""

from __future__ import annotations

import logging
import sys
import traceback
from types import TracebackType
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
        withhold_database_error_text,
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


_WITHHELD = "(message withheld: database errors quote the values of the statement)"


def withhold_database_error_text(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """Renders a logged exception whose chain holds a database error without any exception
    message: PostgreSQL quotes parameter values in its errors (`invalid input syntax ...:
    "<value>"`, `Key (email)=(<value>)`), so only types, SQLSTATE and frames are logged."""
    exc_info = event.get("exc_info")
    if not exc_info:
        return event
    if exc_info is True:
        exc_info = sys.exc_info()
    error = exc_info if isinstance(exc_info, BaseException) else exc_info[1]
    if error is None or not any(_is_database_error(e) for e in _chain(error)):
        return event
    event.pop("exc_info")
    event["exception"] = "".join(
        _frames(e.__traceback__) + f"{type(e).__module__}.{type(e).__qualname__}{_sqlstate(e)} "
        f"{_WITHHELD}\n"
        for e in reversed(_chain(error))
    )
    return event


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _is_database_error(error: BaseException) -> bool:
    module = type(error).__module__
    return module.startswith(("sqlalchemy", "psycopg", "asyncpg"))


def _sqlstate(error: BaseException) -> str:
    code = getattr(error, "sqlstate", None) or getattr(
        getattr(error, "orig", None), "sqlstate", None
    )
    return f" (SQLSTATE {code})" if isinstance(code, str) else ""


def _frames(tb: TracebackType | None) -> str:
    return "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb))
