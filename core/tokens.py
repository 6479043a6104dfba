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
