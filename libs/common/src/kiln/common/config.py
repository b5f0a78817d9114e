"""Configuration: one frozen dataclass per service, read once from the environment.

Each field is declared with `setting()`, which names its environment variable(s) and
documents it. `load()` reads the process environment, falling back to an optional `.env`
file, converts each value to the field's type, and fails with `ConfigError` naming the
variable when a value is missing or malformed, or when a variable a class lists in its
`retired_settings` (old name -> replacement) is still set. Nothing else in the code base reads
`os.environ`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import dotenv

T = TypeVar("T")
_MISSING: Any = dataclasses.MISSING


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def setting(
    env: str | tuple[str, ...],
    doc: str,
    default: Any = _MISSING,
    *,
    secret: bool = False,
    check: Callable[[Any], str | None] | None = None,
) -> Any:
    """Declares a config field read from `env` (the first variable that is set wins).

    `check` returns a problem description for a bad value, or None. `secret` keeps the value
    out of `describe()` and logs.
    """
    names = (env,) if isinstance(env, str) else env
    metadata = {"env": names, "doc": doc, "secret": secret, "check": check}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple or frozen value as a default")
    return dataclasses.field(default=default, metadata=metadata)


def positive(value: float) -> str | None:
    """A `check` for numbers that must be above zero."""
    return None if value > 0 else "must be greater than 0"


def non_negative(value: float) -> str | None:
    """A `check` for numbers that must not be negative."""
    return None if value >= 0 else "must be 0 or more"


def readable_file(path: str) -> str | None:
    """A `check` for a file path that may be empty (unset) but, when set, must be readable."""
    if not path:
        return None
    try:
        with Path(path).open("rb") as handle:
            handle.read(1)
    except OSError as error:
        return f"cannot read {path}: {error.strerror or error}"
    return None


def one_of(*allowed: str) -> Callable[[Any], str | None]:
    """A `check` for strings from a fixed set."""

    def check(value: Any) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"

    return check


def load(
    cls: type[T],
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
) -> T:
    """Builds `cls` from `environ` (default: the process environment) and `env_file`.

    The process environment wins over the file, so deployments can override a checked-in
    development `.env`.
    """
    source: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        source.update({k: v for k, v in dotenv.dotenv_values(env_file).items() if v is not None})
    source.update(os.environ if environ is None else environ)

    for old, new in _retired_settings(cls).items():
        if source.get(old, "") != "":
            raise ConfigError(old, f"is no longer read; set {new} instead")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        names: tuple[str, ...] = field.metadata["env"]
        raw_name = next((n for n in names if source.get(n, "") != ""), None)
        if raw_name is None:
            if field.default is dataclasses.MISSING:
                raise ConfigError(names[0], "is required but not set")
            value = field.default
            variable = names[0]
        else:
            variable = raw_name
            value = _convert(variable, source[raw_name], hints[field.name])
        check = field.metadata["check"]
        problem = check(value) if check is not None and value is not None else None
        if problem:
            raise ConfigError(variable, problem)
        values[field.name] = value
    return cls(**values)


def _retired_settings(cls: type[Any]) -> dict[str, str]:
    """Old variable -> its replacement, from `retired_settings` class attributes (a
    ClassVar mapping) anywhere in `cls`'s bases."""
    retired: dict[str, str] = {}
    for base in reversed(cls.__mro__):
        retired.update(vars(base).get("retired_settings", {}))
    return retired


def describe(cls: type[Any]) -> Iterator[tuple[str, str, str]]:
    """Yields (variable, default, meaning) for every setting of `cls`, for docs and --help."""
    for field in dataclasses.fields(cls):
        names: tuple[str, ...] = field.metadata["env"]
        if field.default is dataclasses.MISSING:
            default = "(required)"
        elif field.metadata["secret"]:
            default = "(secret)"
        else:
            default = _show(field.default)
        meaning = field.metadata["doc"]
        if len(names) > 1:
            meaning += f" Falls back to {', '.join(names[1:])}."
        yield names[0], default, meaning


def _show(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "(empty)"
    return str(value)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(variable: str, raw: str, annotation: Any) -> Any:
    raw = raw.strip()
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _convert(variable, raw, options[0])
    if origin is tuple:
        (item_type, _ellipsis) = typing.get_args(annotation)
        return tuple(_convert(variable, part, item_type) for part in raw.split(",") if part.strip())
    if annotation is bool:
        if raw.lower() not in _TRUE | _FALSE:
            raise ConfigError(variable, f"must be true or false, got {raw!r}")
        return raw.lower() in _TRUE
    if annotation not in (int, float, str, Path):
        raise TypeError(f"unsupported config type {annotation!r} for {variable}")
    try:
        return annotation(raw)
    except ValueError:
        kind = "a whole number" if annotation is int else "a number"
        raise ConfigError(variable, f"must be {kind}, got {raw!r}") from None


def load_or_exit(cls: type[T]) -> T:
    """`load()` for a process entry point: a bad setting prints its name and exits 2."""
    try:
        return load(cls)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
