"""Prompt polishers: the built-in rules and an OpenAI-style chat endpoint."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegen import polish
from imagegen.polish import http, rules
from imagegen.providers import errors

if TYPE_CHECKING:
    from fake_http_api import FakeApi

KEY = "sk-polish-test"
MakePolisher = Callable[..., http.HttpPolisher]


def completion(content: object, finish_reason: str = "stop") -> dict[str, object]:
    """A chat completions answer with one choice."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
    }


# --- rules -------------------------------------------------------------------------------


def test_tidy_normalises_whitespace_and_commas() -> None:
    """Whitespace runs collapse, empty phrases vanish, and repeated phrases (ignoring case)
    keep their first spelling."""
    messy = "  a red   fox ,, in the\n snow ,A Red Fox,  , watercolor,  "

    assert rules.tidy(messy) == "a red fox, in the snow, watercolor"


def test_enrich_adds_one_descriptor_per_missing_category() -> None:
    """A bare prompt keeps its words first and gains one quality, one lighting and one
    composition descriptor."""
    polished = rules.enrich("a red fox in the snow")

    phrases = polished.split(", ")
    assert phrases[0] == "a red fox in the snow"
    assert len(phrases) == 4
    assert "lighting" in phrases[2]
    assert "composition" in phrases[3]


def test_enrich_skips_categories_the_prompt_already_covers() -> None:
    """A prompt that already speaks of detail, light and framing only gets tidied."""
    prompt = "portrait of a sailor, dramatic shadows, highly detailed"

    assert rules.enrich(prompt) == prompt


def test_enrich_is_deterministic_and_varies_by_prompt() -> None:
    """The same prompt always gets the same descriptors; different prompts may get
    different ones (the choice follows a hash of the prompt)."""
    prompts = [f"a small house number {n}" for n in range(30)]

    first = [rules.enrich(p) for p in prompts]
    again = [rules.enrich(p) for p in prompts]

    assert first == again
    assert len({p.split(", ", 1)[1] for p in first}) > 3


@given(st.text(max_size=200))
def test_enrich_is_idempotent(prompt: str) -> None:
    """Polishing a polished prompt changes nothing."""
    once = rules.enrich(prompt)

    assert rules.enrich(once) == once


@given(st.text(alphabet=st.characters(blacklist_characters=","), min_size=1, max_size=80))
def test_enrich_keeps_the_prompt(prompt: str) -> None:
    """The polished prompt starts with the tidied original: words are added, none are
    changed or removed."""
    tidied = " ".join(prompt.split())

    assert rules.enrich(prompt).startswith(tidied)


async def test_rules_polisher_blank_prompt_stays_blank() -> None:
    """An empty or blank prompt is not padded with descriptors."""
    polisher = polish.create_polisher("rules")

    assert await polisher.polish("") == ""
    assert await polisher.polish(" ,  , ") == ""
    assert polisher.name == "rules"


# --- http --------------------------------------------------------------------------------


@pytest.fixture
async def make_polisher(fake_api: FakeApi) -> AsyncIterator[MakePolisher]:
    """Builds HTTP polishers pointed at the fake server and closes them after the test."""
    made: list[http.HttpPolisher] = []

    def make(**options: object) -> http.HttpPolisher:
        settings: dict[str, object] = {
            "base_url": fake_api.url,
            "api_key": KEY,
            "model": "chat-model-1",
            "timeout": 5.0,
        }
        settings.update(options)
        polisher = http.HttpPolisher(**settings)  # type: ignore[arg-type]
        made.append(polisher)
        return polisher

    yield make
    for polisher in made:
        await polisher.aclose()


async def test_http_request_shape(fake_api: FakeApi, make_polisher: MakePolisher) -> None:
    """The polisher POSTs model, temperature 0 and [system instruction, user prompt] to
    v1/chat/completions with the bearer key, and returns choices[0].message.content."""
    fake_api.reply(body=completion("a red fox in fresh snow, soft winter light"))

    polished = await make_polisher(instruction="Improve it.").polish("a red fox in the snow")

    assert polished == "a red fox in fresh snow, soft winter light"
    [seen] = fake_api.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["Authorization"] == f"Bearer {KEY}"
    assert seen.json() == {
        "model": "chat-model-1",
        "temperature": 0,
        "messages": [
            {"role": "system", "content": "Improve it."},
            {"role": "user", "content": "a red fox in the snow"},
        ],
    }


async def test_http_answer_is_cleaned(fake_api: FakeApi, make_polisher: MakePolisher) -> None:
    """Wrapping quotes and line breaks that chat models like to add are removed."""
    fake_api.reply(body=completion('  "a red fox\n\nin the snow,  at dusk"  \n'))

    assert await make_polisher().polish("a red fox") == "a red fox in the snow, at dusk"


async def test_http_blank_prompt_is_not_sent(
    fake_api: FakeApi, make_polisher: MakePolisher
) -> None:
    """A blank prompt polishes to "" without a request."""
    assert await make_polisher().polish("   ") == ""
    assert fake_api.requests == []


async def test_http_503_then_success(fake_api: FakeApi, make_polisher: MakePolisher) -> None:
    """A 503 is a retryable PROVIDER_UNAVAILABLE, and the next attempt succeeds."""
    fake_api.reply(503, b"upstream overloaded")
    fake_api.reply(body=completion("better prompt"))
    polisher = make_polisher()

    with pytest.raises(errors.ProviderUnavailable) as failure:
        await polisher.polish("prompt")

    assert failure.value.retryable
    assert await polisher.polish("prompt") == "better prompt"


async def test_http_429_carries_retry_after(fake_api: FakeApi, make_polisher: MakePolisher) -> None:
    """A 429 is RATE_LIMITED with the Retry-After seconds, as for image providers."""
    fake_api.reply(
        429,
        {"error": {"message": "Rate limit reached", "type": "requests"}},
        headers={"Retry-After": "12"},
    )

    with pytest.raises(errors.RateLimited) as failure:
        await make_polisher().polish("prompt")

    assert failure.value.retry_after == 12.0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        pytest.param(
            400,
            {"error": {"message": "flagged", "code": "content_policy_violation"}},
            errors.InvalidPrompt,
            id="content-policy",
        ),
        pytest.param(
            400,
            {"error": {"message": "unknown model", "param": "model"}},
            errors.ProviderRejected,
            id="400-other",
        ),
        pytest.param(401, {"error": {"message": "bad key"}}, errors.ProviderRejected, id="401"),
        pytest.param(500, b"oops", errors.ProviderUnavailable, id="500"),
    ],
)
async def test_http_status_classification(
    fake_api: FakeApi,
    make_polisher: MakePolisher,
    status: int,
    body: object,
    expected: type[errors.RenderError],
) -> None:
    """Failures are classified by the same rules as the HTTP image provider."""
    fake_api.reply(status, body)

    with pytest.raises(errors.RenderError) as failure:
        await make_polisher().polish("prompt")

    assert type(failure.value) is expected


async def test_http_timeout(fake_api: FakeApi, make_polisher: MakePolisher) -> None:
    """A slow endpoint gives a retryable PROVIDER_TIMEOUT once the timeout passes."""
    server_delay = 10.0
    fake_api.reply(body=completion("late"), delay=server_delay)
    started = time.monotonic()

    with pytest.raises(errors.ProviderTimeout):
        await make_polisher(timeout=0.3).polish("prompt")

    # It gave up long before the slow endpoint would have answered.
    assert time.monotonic() - started < server_delay / 2


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>", id="not-json"),
        pytest.param({"choices": []}, id="no-choices"),
        pytest.param(completion(None), id="null-content"),
        pytest.param(completion("   "), id="blank-content"),
        pytest.param({"choices": [{"text": "legacy"}]}, id="wrong-shape"),
    ],
)
async def test_http_unusable_answer_is_unavailable(
    fake_api: FakeApi, make_polisher: MakePolisher, body: object
) -> None:
    """A 200 without usable message content is a retryable PROVIDER_UNAVAILABLE."""
    fake_api.reply(200, body)

    with pytest.raises(errors.ProviderUnavailable):
        await make_polisher().polish("prompt")


async def test_http_content_filter_is_invalid_prompt(
    fake_api: FakeApi, make_polisher: MakePolisher
) -> None:
    """A completion stopped by the content filter is a final INVALID_PROMPT."""
    fake_api.reply(body=completion(None, finish_reason="content_filter"))

    with pytest.raises(errors.InvalidPrompt) as failure:
        await make_polisher().polish("prompt")

    assert not failure.value.retryable


# --- factory -----------------------------------------------------------------------------


async def test_create_polisher_http_from_string_options(fake_api: FakeApi) -> None:
    """The factory builds an http polisher from environment-style string options."""
    fake_api.reply(body=completion("done"))
    polisher = polish.create_polisher(
        "http", {"base_url": fake_api.url, "model": "m", "timeout": "2.5"}
    )
    try:
        assert polisher.name == "http"
        assert await polisher.polish("prompt") == "done"
        assert "Authorization" not in fake_api.requests[0].headers
    finally:
        await polisher.aclose()


@pytest.mark.parametrize(
    ("kind", "options", "complaint"),
    [
        pytest.param("llm", {}, "unknown polisher kind", id="unknown-kind"),
        pytest.param("rules", {"model": "x"}, "unknown rules option", id="stray-option"),
        pytest.param("http", {"base_url": "http://x"}, "'model'", id="missing-model"),
        pytest.param("http", {"model": "m"}, "'base_url'", id="missing-url"),
        pytest.param(
            "http",
            {"base_url": "http://x", "model": "m", "timeout": "soon"},
            "'timeout'",
            id="bad-timeout",
        ),
    ],
)
def test_create_polisher_rejects_bad_configuration(
    kind: str, options: dict[str, object], complaint: str
) -> None:
    """Bad kinds and options fail at start with a message naming them."""
    with pytest.raises(ValueError, match=complaint):
        polish.create_polisher(kind, options)
