"""The Anthropic family: messages (whole and streamed), count_tokens and the model list.

Usage numbers (``I``, ``N``, ``C`` as in the package docstring)
    Like the real API, ``input_tokens`` excludes cache reads: ``input_tokens = I - C``,
    ``cache_read_input_tokens = C``, ``cache_creation_input_tokens = 0``,
    ``output_tokens = N`` (so the three input fields add up to ``I``).  Streams:
    ``message_start`` carries those input fields and ``output_tokens = 1``;
    ``message_delta`` carries the cumulative final usage (all input fields again plus
    ``output_tokens = N``).  ``count_tokens`` answers ``I``.

Routes
    ``POST /v1/messages``, ``POST /v1/messages/count_tokens`` (``?beta=true`` accepted),
    ``GET /v1/models[/{id}]`` when the request carries ``anthropic-version``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .server import UpstreamServer
from .tools import anthropic_calls, argument_pieces
from .wire import (
    ANTHROPIC,
    CONTENT,
    POST,
    PRE,
    SSE_HEADERS,
    Event,
    Turn,
    Usage,
    count_input_tokens,
    json_response,
    new_id,
    set_usage,
    sse_frame,
)


class AnthropicRoutes(UpstreamServer):
    """Handlers of the Anthropic routes."""

    @staticmethod
    def _anthropic_model(name: str) -> dict[str, Any]:
        """One entry of the Anthropic model list."""
        return {
            "type": "model",
            "id": name,
            "display_name": name.replace("-", " ").title(),
            "created_at": "2025-01-01T00:00:00Z",
            "lifecycle": "active",
        }

    @staticmethod
    def _anthropic_usage(u: Usage, output: int) -> dict[str, Any]:
        return {
            "input_tokens": u.input - u.cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": u.cached,
            "output_tokens": output,
        }

    async def _h_messages(self, request: web.Request) -> web.StreamResponse:
        turn = await self._turn(request, ANTHROPIC, _counted)
        if not isinstance(turn, Turn):
            return turn
        body, model, usage, pieces, mode = turn.body, turn.model, turn.usage, turn.pieces, turn.mode
        mid = new_id("msg_")
        headers = {"request-id": new_id("req_")}
        calls = anthropic_calls(body, model)
        stop = "tool_use" if calls else "end_turn"
        if not body.get("stream"):
            content = [
                {"type": "tool_use", "id": f"toolu_{i}", "name": n, "input": json.loads(a)}
                for i, (n, a) in enumerate(calls)
            ] or [{"type": "text", "text": "".join(pieces)}]
            out = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {**self._anthropic_usage(usage, usage.output), "service_tier": "standard"},
            }
            set_usage(out, "usage", out["usage"], mode)
            return json_response(out, headers=headers)

        def events() -> Iterator[Event]:
            start_usage = {**self._anthropic_usage(usage, 1), "service_tier": "standard"}
            message: dict[str, Any] = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            }
            set_usage(message, "usage", start_usage, mode)
            yield PRE, "message_start", {"type": "message_start", "message": message}
            if calls:  # tool calls instead of text (tools.py)
                yield from tool_use_events(calls)
                yield PRE, "ping", {"type": "ping"}
            else:
                yield from text_events(pieces)
            delta = {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
            }
            set_usage(delta, "usage", self._anthropic_usage(usage, usage.output), mode)
            yield POST, "message_delta", delta
            yield POST, "message_stop", {"type": "message_stop"}

        return await self._emit(request, events(), sse_frame, {**SSE_HEADERS, **headers})

    async def _h_count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, ANTHROPIC, need_body=True)
        if early is not None:
            return early
        return json_response({"input_tokens": count_input_tokens(_counted(body))})


def text_events(pieces: tuple[str, ...]) -> Iterator[Event]:
    """The text block (index 0): its start, a ping, one text_delta per piece, its stop."""
    block = {"type": "text", "text": ""}
    yield (
        PRE,
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": block},
    )
    yield PRE, "ping", {"type": "ping"}
    for piece in pieces:
        delta = {"type": "text_delta", "text": piece}
        yield (
            CONTENT,
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": delta},
        )
    yield POST, "content_block_stop", {"type": "content_block_stop", "index": 0}


def tool_use_events(calls: list[tuple[str, str]]) -> Iterator[Event]:
    """One tool_use block per call: its start, the arguments as input_json_delta pieces,
    its stop."""
    for i, (name, arguments) in enumerate(calls):
        block = {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": {}}
        yield (
            PRE,
            "content_block_start",
            {"type": "content_block_start", "index": i, "content_block": block},
        )
        for piece in argument_pieces(arguments):
            delta = {"type": "input_json_delta", "partial_json": piece}
            yield (
                CONTENT,
                "content_block_delta",
                {"type": "content_block_delta", "index": i, "delta": delta},
            )
        yield PRE, "content_block_stop", {"type": "content_block_stop", "index": i}


def _counted(body: dict[str, Any]) -> dict[str, Any]:
    """What of a messages body counts as input: the messages and the system prompt."""
    return {k: body[k] for k in ("messages", "system") if k in body}
