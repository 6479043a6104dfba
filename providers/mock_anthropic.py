"""Anthropic Messages answers of the bundled `mock` provider (see :mod:`tokone.providers.mock`).

The same deterministic reply as the OpenAI side: the words of ``mock_words.REPLY``, one
``text_delta`` per word when streamed, output tokens = the number of words, input tokens =
the words of the request's ``system`` and ``messages``, no prompt cache. Streams follow the
real event sequence (``message_start``, ``content_block_start``, ``ping``, deltas,
``content_block_stop``, ``message_delta``, ``message_stop``) and are read by the same
:class:`~tokone.providers.anthropic.MessagesStreamRelay` as a real upstream's.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from tokone.core.types import Call
from tokone.core.upstream import UpstreamReply
from tokone.providers import mock_words
from tokone.providers.anthropic import MessagesStreamRelay, usage_from_message

ENDPOINTS = frozenset({"messages", "messages.count_tokens"})
JSON_HEADERS = {"content-type": "application/json"}
_encode = msgspec.json.encode


def input_tokens(body: dict[str, Any]) -> int:
    """Words of the request's system prompt and messages (at least 1)."""
    return max(
        1, mock_words.count_words(body.get("system")) + mock_words.count_words(body.get("messages"))
    )


def usage_object(input_count: int, output_count: int) -> dict[str, Any]:
    """An Anthropic `usage` object with no prompt-cache tokens."""
    return {
        "input_tokens": input_count,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_count,
        "service_tier": "standard",
    }


def message(model: str, input_count: int, *, done: bool) -> dict[str, Any]:
    """A Messages response: the whole reply, or (`done=False`) the empty one streams start with."""
    return {
        "id": f"msg_mock{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": mock_words.REPLY}] if done else [],
        "stop_reason": "end_turn" if done else None,
        "stop_sequence": None,
        "usage": usage_object(input_count, len(mock_words.WORDS) if done else 1),
    }


def send(call: Call, upstream_model: str) -> UpstreamReply:
    """Answer an Anthropic-family call (`messages` or `messages.count_tokens`)."""
    count = input_tokens(call.json())
    if call.endpoint == "messages.count_tokens":
        return UpstreamReply(200, JSON_HEADERS, body=_encode({"input_tokens": count}))
    if call.stream:
        return UpstreamReply(
            200,
            {"content-type": "text/event-stream"},
            stream=stream(upstream_model, count),
            relay=MessagesStreamRelay(call),
        )
    body = _encode(message(upstream_model, count, done=True))
    return UpstreamReply(200, JSON_HEADERS, body=body, usage=usage_from_message(body, call))


def _event(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _encode({"type": kind, **fields}) + b"\n\n"


async def stream(model: str, input_count: int) -> AsyncIterator[bytes]:
    """The reply as Anthropic's SSE event sequence, one word per `text_delta`."""
    yield _event("message_start", message=message(model, input_count, done=False))
    yield _event("content_block_start", index=0, content_block={"type": "text", "text": ""})
    yield _event("ping")
    for i, word in enumerate(mock_words.WORDS):
        text = word if i == 0 else " " + word
        yield _event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})
    yield _event("content_block_stop", index=0)
    yield _event(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage=usage_object(input_count, len(mock_words.WORDS)),
    )
    yield _event("message_stop")
