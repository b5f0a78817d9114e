"""Retry timing and failure classification."""

from __future__ import annotations

import random

from imagegen import providers, retry


def test_backoff_doubles_within_bounds_with_jitter() -> None:
    """Delays grow 1, 2, 4 ... s per delivery, never outside 1 .. 60 s, spread by the jitter."""
    backoff = retry.Backoff(1.0, 60.0, 0.2, random.Random(1))
    for delivery, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]:
        delays = [backoff.delay(delivery) for _ in range(200)]
        assert min(delays) >= max(1.0, base * 0.8)
        assert max(delays) <= base * 1.2
        assert len(set(delays)) > 1
    assert all(backoff.delay(30) <= 60.0 for _ in range(100))


def test_backoff_honours_retry_after() -> None:
    """A provider's Retry-After wins over a shorter backoff."""
    backoff = retry.Backoff(1.0, 60.0, 0.0)
    assert backoff.delay(1, retry_after=7.5) == 7.5
    assert backoff.delay(1, retry_after=0.1) == 1.0


def test_render_errors_keep_their_class() -> None:
    """Typed render errors keep type and retryability; 429 carries retry_after."""
    limited = retry.from_render_error(providers.RateLimited("slow", retry_after=3))
    assert (limited.type, limited.retryable, limited.retry_after) == ("RATE_LIMITED", True, 3)
    refused = retry.from_render_error(providers.InvalidPrompt("no"))
    assert (refused.type, refused.retryable) == ("INVALID_PROMPT", False)
    assert retry.time_limit(300).retryable
    assert not retry.expired(10, 5).retryable
