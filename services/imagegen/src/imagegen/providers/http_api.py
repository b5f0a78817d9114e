"""JSON over HTTP to external model APIs, with failures sorted into typed render errors.

Shared by the HTTP image provider and the HTTP prompt polisher, so both classify a 429 or a
dropped connection the same way:

- no answer in time (or 408)             -> ProviderTimeout      (retry)
- connection trouble, 5xx, garbage body  -> ProviderUnavailable  (retry)
- 429                                    -> RateLimited          (retry after Retry-After)
- 400/422 about the prompt               -> InvalidPrompt        (final)
- 400/422 about the size                 -> UnsupportedSize      (final)
- any other 4xx (401, 403, 404, ...)     -> ProviderRejected     (final)

External APIs report what was wrong in their own shapes, so the 400/422 split reads the
structured fields first (OpenAI `error.param`/`error.code`, FastAPI `detail[].loc`) and only
then falls back to words in the message.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import math
from collections.abc import Mapping

import httpx
import structlog

from imagegen import imaging
from imagegen.providers import errors

log = structlog.get_logger()

_PROMPT_HINTS = ("prompt", "content_policy", "content policy", "safety", "nsfw", "moderation")
_SIZE_HINTS = ("size", "width", "height", "resolution", "dimension")
_MESSAGE_LIMIT = 300


def make_client(base_url: str, api_key: str | None, timeout: float) -> httpx.AsyncClient:
    """A client for one API; the key travels only in the Authorization header."""
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    headers = {"User-Agent": f"kiln-imagegen/{imaging.KILN_VERSION}"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout)


async def post_json(
    client: httpx.AsyncClient, path: str, payload: Mapping[str, object], *, time_limit: float
) -> object:
    """POST `payload` to `path` and return the decoded JSON answer, or raise a RenderError.

    `time_limit` (seconds) bounds the whole exchange: httpx's own timeouts apply to each
    read, so a server trickling bytes could otherwise hold a job far longer.
    """
    where = endpoint(client, path)
    try:
        async with asyncio.timeout(time_limit):
            response = await client.post(path, json=payload)
    except (TimeoutError, httpx.TimeoutException):
        late = errors.ProviderTimeout(f"{where} did not answer within {time_limit:g}s")
        raise _failed(late, path) from None
    except httpx.RequestError as error:
        raise _failed(
            errors.ProviderUnavailable(f"{where} unreachable: {type(error).__name__}"), path
        ) from None
    if not response.is_success:
        raise _failed(classify(response, where), path, status=response.status_code)
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _failed(bad_answer(where, "body is not JSON"), path) from None


def endpoint(client: httpx.AsyncClient, path: str) -> str:
    """The full URL of `path` below the client's base URL, for messages."""
    return f"{str(client.base_url).rstrip('/')}/{path.lstrip('/')}"


def bad_answer(where: str, why: str) -> errors.ProviderUnavailable:
    """A 2xx answer we cannot use; retryable, as a healthy replica may answer properly."""
    return errors.ProviderUnavailable(f"{where} gave an unusable answer: {why}")


def classify(response: httpx.Response, where: str) -> errors.RenderError:
    """The RenderError for a non-2xx `response`."""
    status = response.status_code
    structured, message = _explain(response)
    text = f"{where} answered {status}: {message[:_MESSAGE_LIMIT] or response.reason_phrase}"
    if status == 429:
        return errors.RateLimited(text, retry_after=retry_after(response.headers))
    if status == 408:
        return errors.ProviderTimeout(text)
    if status >= 500:
        return errors.ProviderUnavailable(text)
    if status in (400, 422):
        for clue in (structured, message.lower()):
            if any(hint in clue for hint in _PROMPT_HINTS):
                return errors.InvalidPrompt(text)
            if any(hint in clue for hint in _SIZE_HINTS):
                return errors.UnsupportedSize(text)
    return errors.ProviderRejected(text)


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait from a Retry-After header (delta seconds or HTTP date), if usable."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, (when - datetime.datetime.now(datetime.UTC)).total_seconds())


def _explain(response: httpx.Response) -> tuple[str, str]:
    """(structured clues, human message) from an error body, in OpenAI or FastAPI shape."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "", response.text.strip()
    clues: list[str] = []
    messages: list[str] = []
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # OpenAI: {"error": {"message", "type", "param", "code"}}
        clues += [str(error.get(key) or "") for key in ("param", "code")]
        messages.append(str(error.get("message") or ""))
    elif isinstance(error, str):
        messages.append(error)
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):  # FastAPI validation: [{"loc": [...], "msg": ...}]
        for item in detail:
            if isinstance(item, dict):
                clues += [str(part) for part in item.get("loc") or []]
                messages.append(str(item.get("msg") or ""))
    elif isinstance(detail, str):
        messages.append(detail)
    message = "; ".join(part for part in messages if part) or response.text.strip()
    return " ".join(clues).lower(), message


def _failed(
    error: errors.RenderError, path: str, *, status: int | None = None
) -> errors.RenderError:
    log.warning(
        "model_api_request_failed",
        path=path,
        status=status,
        error_type=error.type,
        retryable=error.retryable,
    )
    return error
