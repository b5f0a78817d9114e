"""Typed render failures the worker turns into a subtask error or a retry.

Every failure a provider (or a polisher) can raise is a `RenderError` carrying the three
things the worker needs: `type` (a `kiln.common.job_errors` name, recorded on the subtask), a
human `message`, and `retryable` (nak with backoff, or `term` at once). The subclasses fix
`type` and `retryable`, so a raise site cannot get the pair inconsistent.
"""

from __future__ import annotations

from kiln.common import job_errors


class RenderError(Exception):
    """A render or polish failed; subclasses say why and whether retrying can help."""

    type: str = job_errors.RENDER_FAILED
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ProviderTimeout(RenderError):
    """The provider did not answer in time; a later attempt may be quicker."""

    type = job_errors.PROVIDER_TIMEOUT
    retryable = True


class ProviderUnavailable(RenderError):
    """The provider is down, unreachable, or answered with something unusable (5xx, garbage)."""

    type = job_errors.PROVIDER_UNAVAILABLE
    retryable = True


class RateLimited(RenderError):
    """The provider throttled us (HTTP 429); `retry_after` seconds, if it said."""

    type = job_errors.RATE_LIMITED
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidPrompt(RenderError):
    """The provider refuses this prompt (content policy, validation); it always will."""

    type = job_errors.INVALID_PROMPT
    retryable = False


class UnsupportedSize(RenderError):
    """The provider cannot render the requested width and height."""

    type = job_errors.UNSUPPORTED_SIZE
    retryable = False


class ProviderRejected(RenderError):
    """The provider refused the request for another reason (auth, bad request, 4xx)."""

    type = job_errors.PROVIDER_REJECTED
    retryable = False
