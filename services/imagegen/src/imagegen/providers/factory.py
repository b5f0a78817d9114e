"""Build a provider by kind from configuration options (usually strings from the environment)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from imagegen.providers import base, http, instant, options, procedural


def _procedural(read: options.Options) -> base.Provider:
    step_delay = read.number("step_delay", 0.0, allow_zero=True)
    max_side = read.integer("max_side", procedural.DEFAULT_MAX_SIDE)
    read.done()
    return procedural.ProceduralProvider(step_delay=step_delay, max_side=max_side)


def _http(read: options.Options) -> base.Provider:
    settings = {
        "base_url": read.text("base_url"),
        "api_style": read.text("api_style"),
        "model": read.text("model", ""),
    }
    api_key = read.text("api_key", "") or None
    timeout = read.number("timeout", http.DEFAULT_TIMEOUT)
    steps = read.integer("steps", http.DEFAULT_STEPS)
    read.done()  # before the client exists, so a typo leaks no connection pool
    return http.HttpProvider(**settings, api_key=api_key, timeout=timeout, steps=steps)


def _instant(read: options.Options) -> base.Provider:
    full_size = read.flag("full_size", False)
    delay = read.number("delay", 0.0, allow_zero=True)
    read.done()
    return instant.InstantProvider(full_size=full_size, delay=delay)


_BUILDERS: dict[str, Callable[[options.Options], base.Provider]] = {
    "procedural": _procedural,
    "http": _http,
    "instant": _instant,
}
PROVIDER_KINDS = tuple(_BUILDERS)


def create_provider(kind: str, settings: Mapping[str, object] | None = None) -> base.Provider:
    """The provider of `kind` configured by `settings`; ValueError names a bad option.

    procedural: step_delay (s, default 0), max_side (px, default 4096).
    http: base_url, api_style (a1111 | openai), api_key, model, timeout (s), steps.
    instant: full_size (default false: a 1/64-size image), delay (s per image, default 0).
    """
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise ValueError(f"unknown provider kind {kind!r}; expected one of {PROVIDER_KINDS}")
    return builder(options.Options(kind, settings))
