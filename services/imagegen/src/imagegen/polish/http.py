"""A polisher that asks an LLM behind an OpenAI-style chat completions endpoint.

POST `v1/chat/completions` with a system instruction and the prompt, at temperature 0 so a
prompt polishes the same way each time the model allows it. Errors are classified by the
same code as the HTTP image provider (`providers.http_api`).
"""

from __future__ import annotations

from imagegen.providers import errors, http_api

DEFAULT_TIMEOUT = 30.0
DEFAULT_INSTRUCTION = (
    "You improve prompts for a text-to-image model. Keep the subject, every detail the user "
    "gave, and the meaning. Add concrete visual detail: setting, lighting, composition, "
    "texture. Answer with the improved prompt only: one line, no quotes, no commentary, at "
    "most 75 words."
)
_PATH = "v1/chat/completions"
_QUOTES = ('"', "'", "“", "”", "`")


class HttpPolisher:
    """The `base.Polisher` backed by a chat model; see the module docstring."""

    name = "http"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        instruction: str = DEFAULT_INSTRUCTION,
    ) -> None:
        if not model:
            raise ValueError("the http polisher needs a model")
        self._model = model
        self._timeout = timeout
        self._instruction = instruction
        self._client = http_api.make_client(base_url, api_key, timeout)

    async def polish(self, prompt: str) -> str:
        """The model's rewrite of `prompt`, on one line without wrapping quotes."""
        if not prompt.strip():
            return ""
        payload = {
            "model": self._model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": self._instruction},
                {"role": "user", "content": prompt},
            ],
        }
        body = await http_api.post_json(self._client, _PATH, payload, time_limit=self._timeout)
        where = http_api.endpoint(self._client, _PATH)
        choice = _first_choice(body)
        if choice.get("finish_reason") == "content_filter":
            raise errors.InvalidPrompt(f"{where} refused the prompt (content filter)")
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        polished = _clean(content) if isinstance(content, str) else ""
        if not polished:
            raise http_api.bad_answer(where, "no message content")
        return polished

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _first_choice(body: object) -> dict[str, object]:
    choices = body.get("choices") if isinstance(body, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else None
    return first if isinstance(first, dict) else {}


def _clean(content: str) -> str:
    # Chat models like to wrap the answer in quotes or spread it over lines.
    text = " ".join(content.split())
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    return text
