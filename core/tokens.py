"""Counting tokens the gateway has to count itself (cut streams, holds, embeddings).

tiktoken needs to download its encodings at run time, which an offline gateway cannot do,
so the default estimator is the usual four-characters-per-token rule; it is deterministic
and errs on the side of the provider's own count for English text.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """Estimated token count of `text` (0 for empty text)."""
    return estimate_chars(len(text))


def estimate_chars(count: int) -> int:
    """Estimated token count of `count` characters (or bytes) of text."""
    return -(-count // CHARS_PER_TOKEN)


MAX_TOKENS = 100_000_000
"""More tokens than any one call can use: a count above it is an upstream bug, not usage."""


def token_count(value: object) -> int | None:
    """An upstream's token count if it is a sane one, else None (the caller estimates instead).

    Sane: an integer (or an integral float) from 0 to :data:`MAX_TOKENS`. Negative numbers,
    fractions, strings, booleans and absurdly large numbers are not; nor is a missing (None)
    count.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        return None
    return value
