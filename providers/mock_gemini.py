"""The mock provider's Gemini dialect: deterministic answers in Google's wire format.

Same rules as the OpenAI mock: the reply is :data:`~tokone.providers.mock_words.REPLY`, output
tokens = its word count (one word per stream chunk, each chunk carrying the running
``usageMetadata`` as Google's does), input tokens = the words of the request's text
(``contents`` and ``systemInstruction``). ``countTokens`` answers that input count;
embeddings are 4-float vectors and carry no usage, like the real API (the gateway estimates).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from tokone.core.types import Call
from tokone.core.upstream import UpstreamReply
from tokone.providers import mock_words
from tokone.providers.gemini import (
    ACTIONS,
    BATCH_EMBED,
    COUNT,
    EMBED,
    GeminiStreamRelay,
    reply_usage,
)

__all__ = ["ACTIONS", "send"]
JSON = {"content-type": "application/json"}
VECTOR = [1.0, 2.0, 3.0, 4.0]
_encode = msgspec.json.encode


def input_words(body: dict[str, Any]) -> int:
    """Input tokens of a generate/count request: the words of its contents and system text."""
    request = body.get("generateContentRequest")
    if isinstance(request, dict):
        body = request
    keys = ("contents", "systemInstruction", "system_instruction")
    counted = {k: body[k] for k in keys if k in body}
    return max(1, mock_words.count_words(counted))


def usage_metadata(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A `usageMetadata` object as Google sends it."""
    return {
        "promptTokenCount": input_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": input_tokens + output_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": input_tokens}],
    }


def candidate(text: str, finish: bool) -> dict[str, Any]:
    """One candidate holding `text` (with `finishReason` on the last one)."""
    found: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
    if finish:
        found["finishReason"] = "STOP"
    return found


async def stream(model: str, input_tokens: int) -> AsyncIterator[bytes]:
    """`streamGenerateContent?alt=sse`: one word per chunk with the running usage, CRLF-framed.

    Google frames its SSE events with CRLF; the mock does too, so the relay's handling of it
    is exercised without an upstream.
    """
    words = mock_words.WORDS
    response_id = uuid.uuid4().hex[:22]
    last = len(words) - 1
    for i, word in enumerate(words):
        chunk = {
            "candidates": [candidate(word if i == 0 else " " + word, i == last)],
            "usageMetadata": usage_metadata(input_tokens, i + 1),
            "modelVersion": model,
            "responseId": response_id,
        }
        yield b"data: " + _encode(chunk) + b"\r\n\r\n"


def send(call: Call, model: str) -> UpstreamReply:
    """The mock's answer to a Gemini-family `call` (any of the five actions)."""
    body = call.json()
    if call.endpoint == EMBED:
        payload: dict[str, Any] = {"embedding": {"values": VECTOR}}
    elif call.endpoint == BATCH_EMBED:
        requests = body.get("requests") or []
        payload = {"embeddings": [{"values": VECTOR} for _ in requests]}
    elif call.endpoint == COUNT:
        payload = {"totalTokens": input_words(body)}
    else:
        input_tokens = input_words(body)
        if call.stream:
            return UpstreamReply(
                status=200,
                headers={"content-type": "text/event-stream"},
                stream=stream(model, input_tokens),
                relay=GeminiStreamRelay(call),
            )
        payload = {
            "candidates": [candidate(mock_words.REPLY, True)],
            "usageMetadata": usage_metadata(input_tokens, len(mock_words.WORDS)),
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:22],
        }
    content = _encode(payload)
    return UpstreamReply(status=200, headers=JSON, body=content, usage=reply_usage(call, content))
