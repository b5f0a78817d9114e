"""The HTTP image provider against a real local HTTP server (see conftest `fake_api`)."""

from __future__ import annotations

import email.utils
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest
import structlog

from imagegen.providers import base, errors, http

if TYPE_CHECKING:
    from fake_http_api import FakeApi

KEY = "sk-test-do-not-log"
REQUEST = base.RenderRequest(
    prompt="a lighthouse in a storm", width=64, height=48, seed=7, negative_prompt="blurry"
)
MakeProvider = Callable[..., http.HttpProvider]


@pytest.fixture
async def make_provider(fake_api: FakeApi) -> AsyncIterator[MakeProvider]:
    """Builds providers pointed at the fake server and closes them after the test."""
    made: list[http.HttpProvider] = []

    def make(api_style: str = "a1111", **options: object) -> http.HttpProvider:
        settings: dict[str, object] = {"base_url": fake_api.url, "api_key": KEY, "timeout": 5.0}
        settings.update(options)
        provider = http.HttpProvider(api_style=api_style, **settings)  # type: ignore[arg-type]
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


class Progress:
    """Records progress reports."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    async def __call__(self, step: int, total: int) -> None:
        self.calls.append((step, total))


async def test_a1111_request_shape_and_answer(
    fake_api: FakeApi, make_provider: MakeProvider
) -> None:
    """a1111 style POSTs prompt, negative prompt, size, seed and steps to sdapi/v1/txt2img
    with the bearer key, decodes the first base64 image and reports progress once."""
    fake_api.reply(body={"images": [fake_api.png_base64(64, 48)], "info": "{}"})
    progress = Progress()

    image = await make_provider("a1111", steps=12).render(REQUEST, progress)

    assert image.size == (64, 48)
    assert image.getpixel((0, 0)) == (200, 40, 40)
    assert progress.calls == [(1, 1)]
    [seen] = fake_api.requests
    assert seen.path == "/sdapi/v1/txt2img"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.json() == {
        "prompt": "a lighthouse in a storm",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 48,
        "seed": 7,
        "steps": 12,
    }


async def test_a1111_model_option_overrides_the_checkpoint(
    fake_api: FakeApi, make_provider: MakeProvider
) -> None:
    """With a model configured, a1111 requests ask for that checkpoint and provenance
    records it; without one, the model is reported as the API style."""
    fake_api.reply(body={"images": [fake_api.png_base64(64, 48)]})
    provider = make_provider("a1111", model="sdxl_base_1.0")

    await provider.render(REQUEST, base.no_progress)

    assert fake_api.requests[0].json()["override_settings"] == {
        "sd_model_checkpoint": "sdxl_base_1.0"
    }
    assert provider.model == "sdxl_base_1.0"
    assert make_provider("a1111").model == "a1111"


async def test_openai_request_shape_and_answer(
    fake_api: FakeApi, make_provider: MakeProvider
) -> None:
    """openai style POSTs model, prompt, "WxH" size, n=1 and b64_json to
    v1/images/generations with the bearer key and decodes data[0].b64_json."""
    fake_api.reply(body={"created": 1, "data": [{"b64_json": fake_api.png_base64(64, 48)}]})

    image = await make_provider("openai", model="image-model-1").render(REQUEST, Progress())

    assert image.size == (64, 48)
    [seen] = fake_api.requests
    assert seen.path == "/v1/images/generations"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.json() == {
        "model": "image-model-1",
        "prompt": "a lighthouse in a storm",
        "size": "64x48",
        "n": 1,
        "response_format": "b64_json",
    }


async def test_base_url_path_prefix_is_kept(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """An API mounted under a path prefix (a gateway) is called below that prefix."""
    fake_api.reply(body={"images": [fake_api.png_base64(64, 48)]})

    await make_provider(base_url=f"{fake_api.url}/gateway/sd/").render(REQUEST, Progress())

    assert fake_api.requests[0].path == "/gateway/sd/sdapi/v1/txt2img"


async def test_no_key_means_no_authorization_header(
    fake_api: FakeApi, make_provider: MakeProvider
) -> None:
    """A server without auth gets no Authorization header at all."""
    fake_api.reply(body={"images": [fake_api.png_base64(64, 48)]})

    await make_provider(api_key=None).render(REQUEST, Progress())

    assert "Authorization" not in fake_api.requests[0].headers


async def test_503_then_success(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """A 503 is a retryable PROVIDER_UNAVAILABLE, and the next attempt succeeds."""
    fake_api.reply(503, {"detail": "model loading"})
    fake_api.reply(body={"images": [fake_api.png_base64(64, 48)]})
    provider = make_provider()

    with pytest.raises(errors.ProviderUnavailable) as failure:
        await provider.render(REQUEST, Progress())
    image = await provider.render(REQUEST, Progress())

    assert failure.value.type == "PROVIDER_UNAVAILABLE"
    assert failure.value.retryable
    assert "503" in failure.value.message
    assert image.size == (64, 48)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            400,
            {
                "error": {
                    "message": "rejected by safety system",
                    "param": None,
                    "code": "content_policy_violation",
                    "type": "invalid_request_error",
                }
            },
            errors.InvalidPrompt,
            id="openai-content-policy",
        ),
        pytest.param(
            400,
            {"error": {"message": "bad", "param": "prompt"}},
            errors.InvalidPrompt,
            id="openai-param-prompt",
        ),
        pytest.param(
            422,
            {"detail": [{"loc": ["body", "prompt"], "msg": "field required", "type": "missing"}]},
            errors.InvalidPrompt,
            id="fastapi-prompt",
        ),
        pytest.param(400, b"Prompt contains blocked words", errors.InvalidPrompt, id="text"),
        pytest.param(
            422,
            {"detail": [{"loc": ["body", "width"], "msg": "must be <= 2048", "type": "x"}]},
            errors.UnsupportedSize,
            id="fastapi-width",
        ),
        pytest.param(
            400,
            {"error": {"message": "1344x768 is not supported", "param": "size"}},
            errors.UnsupportedSize,
            id="openai-size",
        ),
        pytest.param(400, {"detail": "sampler unknown"}, errors.ProviderRejected, id="400-other"),
        pytest.param(401, {"error": "invalid api key"}, errors.ProviderRejected, id="401"),
        pytest.param(404, b"not found", errors.ProviderRejected, id="404"),
        pytest.param(500, b"Traceback ...", errors.ProviderUnavailable, id="500"),
        pytest.param(502, b"", errors.ProviderUnavailable, id="502-empty"),
        pytest.param(408, b"", errors.ProviderTimeout, id="408"),
    ],
)
async def test_status_classification(
    fake_api: FakeApi,
    make_provider: MakeProvider,
    status: int,
    body: object,
    expected: type[errors.RenderError],
) -> None:
    """Each HTTP failure maps to one typed error: prompt and size problems and other 4xx
    are final, 5xx and 408 are retryable; the message names the status."""
    fake_api.reply(status, body)

    with pytest.raises(errors.RenderError) as failure:
        await make_provider().render(REQUEST, Progress())

    assert type(failure.value) is expected
    assert failure.value.retryable == (
        expected in (errors.ProviderUnavailable, errors.ProviderTimeout)
    )
    assert str(status) in failure.value.message


async def test_429_with_retry_after_seconds(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """A 429 is a retryable RATE_LIMITED carrying the server's Retry-After seconds."""
    fake_api.reply(429, {"error": "slow down"}, headers={"Retry-After": "7"})

    with pytest.raises(errors.RateLimited) as failure:
        await make_provider().render(REQUEST, Progress())

    assert failure.value.type == "RATE_LIMITED"
    assert failure.value.retryable
    assert failure.value.retry_after == 7.0


async def test_429_with_retry_after_date(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """Retry-After given as an HTTP date becomes the seconds until that date."""
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake_api.reply(429, b"", headers={"Retry-After": when})

    with pytest.raises(errors.RateLimited) as failure:
        await make_provider().render(REQUEST, Progress())

    assert failure.value.retry_after is not None
    assert 25 <= failure.value.retry_after <= 31


async def test_429_without_usable_retry_after(
    fake_api: FakeApi, make_provider: MakeProvider
) -> None:
    """A missing or unreadable Retry-After leaves retry_after unset (the worker's backoff)."""
    fake_api.reply(429, b"", headers={"Retry-After": "soon"})
    fake_api.reply(429, b"")
    provider = make_provider()

    for _ in range(2):
        with pytest.raises(errors.RateLimited) as failure:
            await provider.render(REQUEST, Progress())
        assert failure.value.retry_after is None


async def test_slow_server_times_out(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """A server slower than the timeout gives a retryable PROVIDER_TIMEOUT, on time."""
    server_delay = 10.0
    fake_api.reply(body={"images": []}, delay=server_delay)
    started = time.monotonic()

    with pytest.raises(errors.ProviderTimeout) as failure:
        await make_provider(timeout=0.3).render(REQUEST, Progress())

    assert failure.value.retryable
    # On time: it gave up long before the slow server would have answered.
    assert time.monotonic() - started < server_delay / 2


async def test_connection_refused_is_unavailable(make_provider: MakeProvider) -> None:
    """Nothing listening on the port is a retryable PROVIDER_UNAVAILABLE."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with pytest.raises(errors.ProviderUnavailable) as failure:
        await make_provider(base_url=f"http://127.0.0.1:{port}").render(REQUEST, Progress())

    assert failure.value.retryable


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>bad gateway</html>", id="not-json"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param({"images": []}, id="no-images"),
        pytest.param({"unexpected": True}, id="wrong-shape"),
        pytest.param([1, 2, 3], id="json-list"),
        pytest.param({"images": ["%%% not base64 %%%"]}, id="bad-base64"),
        pytest.param({"images": ["aGVsbG8gd29ybGQ="]}, id="not-an-image"),
    ],
)
async def test_unusable_success_body_is_unavailable(
    fake_api: FakeApi, make_provider: MakeProvider, body: object
) -> None:
    """A 200 whose body is not the expected JSON image is a retryable PROVIDER_UNAVAILABLE."""
    fake_api.reply(200, body)

    with pytest.raises(errors.ProviderUnavailable) as failure:
        await make_provider().render(REQUEST, Progress())

    assert failure.value.retryable


async def test_other_size_is_accepted_as_is(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """An API that returns another size than asked is not an error: the actual image (and
    so its actual size) is returned for the worker to record."""
    fake_api.reply(body={"images": [fake_api.png_base64(32, 32)]})

    image = await make_provider().render(REQUEST, Progress())

    assert image.size == (32, 32)


async def test_data_url_images_are_decoded(fake_api: FakeApi, make_provider: MakeProvider) -> None:
    """Servers that answer with a data URL instead of bare base64 still work."""
    fake_api.reply(body={"images": ["data:image/png;base64," + fake_api.png_base64(64, 48)]})

    image = await make_provider().render(REQUEST, Progress())

    assert image.size == (64, 48)


async def test_api_key_is_never_logged_or_reported(
    fake_api: FakeApi, make_provider: MakeProvider
) -> None:
    """The API key appears in no log event, error message or repr of the provider."""
    fake_api.reply(401, {"error": "bad key"})
    provider = make_provider()

    with structlog.testing.capture_logs() as logs, pytest.raises(errors.RenderError) as failure:
        await provider.render(REQUEST, Progress())

    assert logs, "the failure should be logged"
    assert KEY not in repr(logs)
    assert KEY not in failure.value.message
    assert KEY not in repr(provider)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        pytest.param({"api_style": "comfy"}, "api_style", id="unknown-style"),
        pytest.param({"api_style": "openai"}, "model", id="openai-without-model"),
        pytest.param({"base_url": "ftp://example.com"}, "base_url", id="not-http"),
        pytest.param({"base_url": "localhost:7860"}, "base_url", id="no-scheme"),
    ],
)
def test_bad_configuration_fails_at_construction(options: dict[str, str], complaint: str) -> None:
    """A misconfigured provider fails when built, naming the bad option, not at first use."""
    settings = {"base_url": "http://127.0.0.1:1", "api_style": "a1111", **options}

    with pytest.raises(ValueError, match=complaint):
        http.HttpProvider(base_url=settings["base_url"], api_style=settings["api_style"])
