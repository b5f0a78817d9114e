"""The provider factory, its option parsing, the instant provider and the error types."""

from __future__ import annotations

import asyncio
import time

import pytest

from imagegen import providers
from imagegen.providers import errors, http, instant, procedural

REQUEST = providers.RenderRequest(prompt="a red fox", width=1344, height=768, seed=3)


async def test_procedural_from_string_options() -> None:
    """Environment-style strings configure the procedural provider (here a step delay)."""
    provider = providers.create_provider("procedural", {"step_delay": "0.02", "max_side": "2048"})
    started = time.monotonic()

    image = await provider.render(providers.RenderRequest("x", 64, 64, 1), providers.no_progress)

    assert isinstance(provider, procedural.ProceduralProvider)
    assert (provider.name, provider.model) == ("procedural", procedural.MODEL)
    assert image.size == (64, 64)
    assert time.monotonic() - started >= 8 * 0.02


async def test_http_from_options() -> None:
    """The factory builds an http provider; the key is only used for the header."""
    provider = providers.create_provider(
        "http",
        {"base_url": "http://127.0.0.1:9", "api_style": "openai", "model": "m", "api_key": "k"},
    )
    try:
        assert isinstance(provider, http.HttpProvider)
        assert (provider.name, provider.model) == ("http", "m")
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("kind", "options", "complaint"),
    [
        pytest.param("gpu", {}, "unknown provider kind", id="unknown-kind"),
        pytest.param("procedural", {"step_dealy": 1}, "step_dealy", id="typo"),
        pytest.param("procedural", {"step_delay": "-1"}, "'step_delay'", id="negative"),
        pytest.param("procedural", {"step_delay": "nan"}, "'step_delay'", id="nan"),
        pytest.param("procedural", {"max_side": "1.5"}, "'max_side'", id="fractional"),
        pytest.param("procedural", {"max_side": True}, "'max_side'", id="bool-as-number"),
        pytest.param("http", {"api_style": "a1111"}, "'base_url'", id="missing-url"),
        pytest.param("http", {"base_url": 7, "api_style": "a1111"}, "'base_url'", id="not-text"),
        pytest.param("instant", {"full_size": "maybe"}, "'full_size'", id="bad-flag"),
        pytest.param("instant", {"delay": "-0.5"}, "'delay'", id="negative-delay"),
    ],
)
def test_bad_configuration_names_the_option(
    kind: str, options: dict[str, object], complaint: str
) -> None:
    """A bad kind or option fails at start with a ValueError that names it."""
    with pytest.raises(ValueError, match=complaint):
        providers.create_provider(kind, options)


def test_kinds_are_listed() -> None:
    """The three built-in kinds are available."""
    assert set(providers.PROVIDER_KINDS) == {"procedural", "http", "instant"}


async def test_instant_is_tiny_solid_and_deterministic() -> None:
    """The instant provider answers with a 1/64-size solid image (aspect kept), reports
    one step, and gives the same colour for the same prompt and seed."""
    calls: list[tuple[int, int]] = []

    async def progress(step: int, total: int) -> None:
        calls.append((step, total))

    provider = providers.create_provider("instant")
    first = await provider.render(REQUEST, progress)
    second = await provider.render(REQUEST, progress)

    assert first.size == (21, 12)
    assert len(first.getcolors() or []) == 1
    assert first.tobytes() == second.tobytes()
    assert calls == [(1, 1), (1, 1)]
    assert provider.model == instant.MODEL


async def test_instant_full_size() -> None:
    """With full_size the instant image has the requested size."""
    provider = providers.create_provider("instant", {"full_size": "true"})

    image = await provider.render(REQUEST, providers.no_progress)

    assert image.size == (1344, 768)


async def test_instant_delay_takes_that_long_without_the_cpu() -> None:
    """With a delay each image takes at least that long, and other work goes on meanwhile."""
    delay, count = 0.2, 10
    provider = providers.create_provider("instant", {"delay": str(delay)})
    started = time.monotonic()
    images = await asyncio.gather(
        *(provider.render(REQUEST, providers.no_progress) for _ in range(count))
    )
    took = time.monotonic() - started
    assert len(images) == count
    # At least one delay; at once, so well under the delays one after the other.
    assert delay <= took < count * delay / 2


@pytest.mark.parametrize(
    ("error", "error_type", "retryable"),
    [
        (errors.ProviderTimeout("x"), "PROVIDER_TIMEOUT", True),
        (errors.ProviderUnavailable("x"), "PROVIDER_UNAVAILABLE", True),
        (errors.RateLimited("x", retry_after=2), "RATE_LIMITED", True),
        (errors.InvalidPrompt("x"), "INVALID_PROMPT", False),
        (errors.UnsupportedSize("x"), "UNSUPPORTED_SIZE", False),
        (errors.ProviderRejected("x"), "PROVIDER_REJECTED", False),
    ],
)
def test_error_types_and_retryability(
    error: errors.RenderError, error_type: str, retryable: bool
) -> None:
    """Each error class fixes its UPPER_SNAKE type and whether the worker retries it."""
    assert isinstance(error, providers.RenderError)
    assert (error.type, error.retryable, error.message) == (error_type, retryable, "x")
