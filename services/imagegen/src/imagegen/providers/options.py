"""Typed reads from a factory's option mapping, with errors that name the bad option.

Options usually come from environment variables, so numbers and flags may arrive as
strings. A typo in an option name is an error at start, not a silently ignored setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


class Options:
    """The options of one provider or polisher kind; call `done()` once all are read."""

    def __init__(self, kind: str, values: Mapping[str, object] | None) -> None:
        self._kind = kind
        self._values = dict(values or {})
        self._read: set[str] = set()

    def _get(self, key: str) -> object | None:
        self._read.add(key)
        return self._values.get(key)

    def _bad(self, key: str, why: str) -> ValueError:
        return ValueError(f"{self._kind} option {key!r}: {why}")

    def text(self, key: str, default: str | None = None) -> str:
        """A string option; required when there is no default."""
        value = self._get(key)
        if value is None:
            if default is None:
                raise self._bad(key, "is required")
            return default
        if not isinstance(value, str):
            raise self._bad(key, "must be a string")
        return value

    def number(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        """A positive (or, if allowed, zero) number option, such as a timeout in seconds."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise self._bad(key, "must be a number")
        try:
            number = float(value)
        except ValueError:
            raise self._bad(key, "must be a number") from None
        if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
            raise self._bad(key, "must be zero or more" if allow_zero else "must be positive")
        return number

    def integer(self, key: str, default: int) -> int:
        """A positive whole-number option."""
        number = self.number(key, default)
        if number != int(number):
            raise self._bad(key, "must be a whole number")
        return int(number)

    def flag(self, key: str, default: bool) -> bool:
        """A boolean option; accepts `true/false`, `1/0`, `yes/no`, `on/off`."""
        value = self._get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise self._bad(key, "must be true or false")

    def done(self) -> None:
        """Fail on options nobody asked for: they are typos or belong to another kind."""
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            raise ValueError(f"unknown {self._kind} option(s): {', '.join(unknown)}")
