"""The mock provider's one deterministic reply and its word counter, shared by its families.

The OpenAI (`mock`), Anthropic (`mock_anthropic`) and Gemini (`mock_gemini`) sides all
answer with the words of :data:`REPLY` and count input as the words of the request's
strings, so the same prompt costs the same whichever family asks.
"""

from __future__ import annotations

from typing import Any

REPLY = "Hello! I am the TokOne mock model, answering without any upstream account."
WORDS = REPLY.split(" ")


def count_words(value: Any) -> int:
    """Words in every string of a JSON value, skipping the keys `model`, `role` and `type`.

    Walks the value with a stack rather than recursion, so a deeply nested body (which the
    decoder accepts up to its own limit) cannot raise RecursionError.
    """
    words, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            words += len(item.split())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(v for k, v in item.items() if k not in ("model", "role", "type"))
    return words
