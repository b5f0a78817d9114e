"""The built-in polisher: tidy the prompt and add neutral quality, light and framing words.

Deterministic (the descriptors are picked by a SHA-256 of the tidied prompt) and idempotent:
a category is skipped when the prompt already speaks about it, and every descriptor we add
names its own category, so polishing a polished prompt changes nothing. The descriptors
are deliberately neutral ("soft lighting", not "golden hour") so the meaning stays.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

_WORD = re.compile(r"[^\W_]+")


@dataclasses.dataclass(frozen=True)
class _Category:
    """Descriptors we may add, and the words that show a prompt already covers the topic."""

    descriptors: tuple[str, ...]
    triggers: frozenset[str]

    def mentioned_in(self, words: set[str]) -> bool:
        return not words.isdisjoint(self.triggers)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CATEGORIES = (
    _Category(
        ("highly detailed", "fine detail", "sharp focus", "crisp detail", "high quality"),
        _words("detail detailed details quality sharp focus 4k 8k"),
    ),
    _Category(
        ("soft lighting", "natural lighting", "balanced lighting", "even lighting"),
        _words(
            "light lighting lights lit sunlight moonlight glow glowing dark night shadow"
            " shadows sunset sunrise dawn dusk neon"
        ),
    ),
    _Category(
        ("balanced composition", "thoughtful composition", "clean composition"),
        _words("composition framing framed portrait shot angle centered"),
    ),
)


def tidy(prompt: str) -> str:
    """One space between words, `, ` between phrases, no empty or repeated phrases."""
    phrases: list[str] = []
    seen: set[str] = set()
    for part in prompt.split(","):
        phrase = " ".join(part.split())
        if phrase and phrase.lower() not in seen:
            seen.add(phrase.lower())
            phrases.append(phrase)
    return ", ".join(phrases)


def enrich(prompt: str) -> str:
    """`tidy(prompt)` plus one descriptor for each category the prompt does not mention."""
    tidied = tidy(prompt)
    if not tidied:
        return ""
    words = set(_WORD.findall(tidied.lower()))
    # surrogatepass: a lone surrogate cannot come through gRPC, but must not crash us either.
    digest = hashlib.sha256(tidied.lower().encode("utf-8", "surrogatepass")).digest()
    added = [
        category.descriptors[digest[index] % len(category.descriptors)]
        for index, category in enumerate(_CATEGORIES)
        if not category.mentioned_in(words)
    ]
    return ", ".join([tidied, *added])


class RulesPolisher:
    """The `base.Polisher` built on `enrich`; needs no network and never fails."""

    name = "rules"

    async def polish(self, prompt: str) -> str:
        """See `enrich`."""
        return enrich(prompt)

    async def aclose(self) -> None:
        """Nothing to release."""
