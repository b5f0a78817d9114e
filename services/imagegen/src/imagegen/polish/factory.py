"""Build a prompt polisher by kind from configuration options."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from imagegen.polish import base, http, rules
from imagegen.providers import options


def _rules(read: options.Options) -> base.Polisher:
    read.done()
    return rules.RulesPolisher()


def _http(read: options.Options) -> base.Polisher:
    base_url = read.text("base_url")
    model = read.text("model")
    api_key = read.text("api_key", "") or None
    timeout = read.number("timeout", http.DEFAULT_TIMEOUT)
    instruction = read.text("instruction", http.DEFAULT_INSTRUCTION)
    read.done()  # before the client exists, so a typo leaks no connection pool
    return http.HttpPolisher(
        base_url=base_url, model=model, api_key=api_key, timeout=timeout, instruction=instruction
    )


_BUILDERS: dict[str, Callable[[options.Options], base.Polisher]] = {
    "rules": _rules,
    "http": _http,
}
POLISHER_KINDS = tuple(_BUILDERS)


def create_polisher(kind: str, settings: Mapping[str, object] | None = None) -> base.Polisher:
    """The polisher of `kind` configured by `settings`; ValueError names a bad option.

    rules: no options.
    http: base_url, model, api_key, timeout (s, default 30), instruction (system prompt).
    """
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"unknown polisher kind {kind!r}; expected one of {POLISHER_KINDS}")
    return builder(options.Options(kind, settings))
