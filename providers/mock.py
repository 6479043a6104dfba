"""The bundled `mock` provider: answers in-process, deterministically, with real usage numbers.

It lets a newcomer try keys, streaming and billing with no upstream account. The reply is
always the words of :data:`REPLY`; output tokens = the number of words (one per stream
chunk); input tokens = the number of whitespace-separated words in the request's text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import msgspec
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Family, Usage
from tokone.core.upstream import Adapter, StreamRelay, UpstreamReply
from tokone.providers import mock_anthropic, mock_gemini
from tokone.providers.mock_words import REPLY, WORDS, count_words
from tokone.providers.openai import (
    PATHS,
    STRIP_USAGE,
    ChatStreamRelay,
    ResponsesStreamRelay,
)

_encode = msgspec.json.encode


def input_text_tokens(body: dict[str, Any]) -> int:
    """Input tokens of an OpenAI-style request: words of its messages / prompt / input."""
    for key in ("messages", "prompt", "input"):
        if key in body:
            return max(1, count_words(body[key]))
    return 1


def _sse(payload: dict[str, Any], event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + _encode(payload) + b"\n\n"


class MockAdapter(Adapter):
    """Serves OpenAI-family calls from memory; no network, no key."""

    name: ClassVar[str] = "mock"
    families: ClassVar[frozenset[Family]] = frozenset(
        {Family.OPENAI, Family.ANTHROPIC, Family.GEMINI}
    )

    def supports(self, call: Call) -> bool:
        """The inference endpoints of each family it speaks."""
        if call.family is Family.ANTHROPIC:
            return call.endpoint in mock_anthropic.ENDPOINTS
        if call.family is Family.GEMINI:
            return call.endpoint in mock_gemini.ACTIONS
        return call.family is Family.OPENAI and call.endpoint in PATHS

    async def aclose(self) -> None:
        """Nothing to close."""

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """Build the deterministic answer for `call`."""
        if call.family is Family.ANTHROPIC:
            return mock_anthropic.send(call, upstream_model)
        if call.family is Family.GEMINI:
            return mock_gemini.send(call, upstream_model)
        body = call.json()
        usage = Usage(
            input_tokens=input_text_tokens(body),
            output_tokens=len(WORDS),
            service_tier=body.get("service_tier") or "default",
        )
        headers = {"content-type": "application/json"}
        if call.endpoint == "embeddings":
            return self._embeddings(body, upstream_model, usage)
        if call.endpoint == "responses.input_tokens":
            payload = {"object": "response.input_tokens", "input_tokens": usage.input_tokens}
            return UpstreamReply(status=200, headers=headers, body=_encode(payload))
        if call.stream:
            relay: StreamRelay
            if call.endpoint == "responses":
                stream = self._responses_stream(upstream_model, usage)
                relay = ResponsesStreamRelay(call)
            else:
                options = body.get("stream_options") or {}
                if not options.get("include_usage"):
                    call.extra[STRIP_USAGE] = True
                stream = self._chat_stream(call.endpoint, upstream_model, usage)
                relay = ChatStreamRelay(call)
            return UpstreamReply(
                status=200,
                headers={"content-type": "text/event-stream"},
                stream=stream,
                relay=relay,
            )
        if call.endpoint == "responses":
            payload = self._response_object(upstream_model, usage)
        else:
            payload = self._completion(call.endpoint, upstream_model, usage)
        return UpstreamReply(status=200, headers=headers, body=_encode(payload), usage=usage)

    @staticmethod
    def _usage_openai(usage: Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": usage.input_tokens,
            "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    @staticmethod
    def _usage_responses(usage: Usage) -> dict[str, Any]:
        return {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }

    def _completion(self, endpoint: str, model: str, usage: Usage) -> dict[str, Any]:
        created = int(time.time())
        if endpoint == "completions":
            return {
                "id": f"cmpl-{uuid.uuid4().hex}",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "text": REPLY, "finish_reason": "stop", "logprobs": None}],
                "usage": self._usage_openai(usage),
            }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "service_tier": usage.service_tier,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY, "refusal": None},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": self._usage_openai(usage),
        }

    async def _chat_stream(self, endpoint: str, model: str, usage: Usage) -> AsyncIterator[bytes]:
        created = int(time.time())
        legacy = endpoint == "completions"
        base: dict[str, Any] = {
            "id": f"{'cmpl' if legacy else 'chatcmpl'}-{uuid.uuid4().hex}",
            "object": "text_completion" if legacy else "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        for i, word in enumerate(WORDS):
            piece = word if i == 0 else " " + word
            last = i == len(WORDS) - 1
            finish = "stop" if last else None
            if legacy:
                choice: dict[str, Any] = {"index": 0, "text": piece, "finish_reason": finish}
            else:
                delta = {"content": piece} if i else {"role": "assistant", "content": piece}
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
            yield _sse({**base, "choices": [choice]})
        yield _sse({**base, "choices": [], "usage": self._usage_openai(usage)})
        yield b"data: [DONE]\n\n"

    def _response_object(self, model: str, usage: Usage, status: str = "completed") -> dict:
        return {
            "id": "resp_mock",
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": "msg_mock",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": REPLY, "annotations": []}],
                }
            ]
            if status == "completed"
            else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": self._usage_responses(usage) if status == "completed" else None,
        }

    async def _responses_stream(self, model: str, usage: Usage) -> AsyncIterator[bytes]:
        seq = 0

        def event(kind: str, **fields: Any) -> bytes:
            nonlocal seq
            seq += 1
            return _sse({"type": kind, "sequence_number": seq - 1, **fields}, kind)

        pending = self._response_object(model, usage, status="in_progress")
        yield event("response.created", response=pending)
        item = {
            "type": "message",
            "id": "msg_mock",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        yield event("response.output_item.added", output_index=0, item=item)
        part = {"type": "output_text", "text": "", "annotations": []}
        yield event(
            "response.content_part.added",
            item_id="msg_mock",
            output_index=0,
            content_index=0,
            part=part,
        )
        for i, word in enumerate(WORDS):
            yield event(
                "response.output_text.delta",
                item_id="msg_mock",
                output_index=0,
                content_index=0,
                delta=word if i == 0 else " " + word,
                logprobs=[],
            )
        yield event(
            "response.output_text.done",
            item_id="msg_mock",
            output_index=0,
            content_index=0,
            text=REPLY,
            logprobs=[],
        )
        final = self._response_object(model, usage)
        yield event("response.completed", response=final)

    def _embeddings(self, body: dict[str, Any], model: str, usage: Usage) -> UpstreamReply:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) and not isinstance(inputs[0], int) else [inputs]
        if body.get("encoding_format") == "base64":
            vector: Any = "AACAPwAAAEAAAEBAAACAQA=="  # float32 [1, 2, 3, 4]
        else:
            vector = [1.0, 2.0, 3.0, 4.0]
        payload = {
            "object": "list",
            "model": model,
            "data": [
                {"object": "embedding", "index": i, "embedding": vector} for i in range(len(items))
            ],
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
        }
        usage.output_tokens = 0
        return UpstreamReply(
            status=200,
            headers={"content-type": "application/json"},
            body=_encode(payload),
            usage=usage,
        )


@hookimpl
def register_providers() -> dict[str, type[Adapter]]:
    """The in-process `mock` provider."""
    return {"mock": MockAdapter}
