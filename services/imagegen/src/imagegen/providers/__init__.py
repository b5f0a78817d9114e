"""Image providers behind one interface, and the typed errors they raise.

`create_provider(kind, options)` builds one from configuration; `await provider.render(
RenderRequest(prompt, width, height, seed), progress)` returns a Pillow image or raises a
`RenderError` whose `type` and `retryable` tell the worker what to do.
"""

from imagegen.providers.base import ProgressCallback, Provider, RenderRequest, no_progress
from imagegen.providers.errors import (
    InvalidPrompt,
    ProviderRejected,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    RenderError,
    UnsupportedSize,
)
from imagegen.providers.factory import PROVIDER_KINDS, create_provider

__all__ = [
    "PROVIDER_KINDS",
    "InvalidPrompt",
    "ProgressCallback",
    "Provider",
    "ProviderRejected",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RateLimited",
    "RenderError",
    "RenderRequest",
    "UnsupportedSize",
    "create_provider",
    "no_progress",
]
