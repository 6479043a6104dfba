"""Streams between OpenAI Chat Completions chunks and Anthropic Messages events, both ways.

An OpenAI client of an Anthropic upstream gets a role chunk, one chunk per text delta,
`delta.tool_calls[i]` chunks (id and name first, then the `input_json_delta` pieces as
`function.arguments`), a chunk with the `finish_reason`, the usage chunk (when it asked with
``stream_options.include_usage``) and ``data: [DONE]``.

An Anthropic client of an OpenAI-compatible upstream gets `message_start`, then per block
`content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`,
`thinking_delta` from `reasoning_content`) / `content_block_stop`, a `message_delta` with the
`stop_reason` and the cumulative usage (input included: an OpenAI upstream reports it only at
the end, so `message_start` carries zeros), and `message_stop`.

An upstream error event becomes the client family's error event.
"""

from __future__ import annotations

import time
from typing import Protocol

from tokone.plugins.translate.base import (
    JSON,
    FromChatChunks,
    StreamConverter,
    anthropic_event,
    openai_event,
    tool_call,
)
from tokone.plugins.translate.replies import (
    FINISH_TO_STOP,
    STOP_TO_FINISH,
    anthropic_usage_to_chat,
    chat_usage_to_anthropic,
)


class ChunkSource(Protocol):
    """Turns one upstream event into chat chunk objects ("[DONE]" for the end)."""

    def chunks(self, data: JSON) -> list[JSON | str]:
        """The chat chunks for one decoded upstream event."""
        ...


class ChatFromMessages:
    """Anthropic Messages events -> OpenAI chat chunk objects (and "[DONE]" at the end)."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""
        self.created = int(time.time())
        self.usage: JSON = {}
        self.tools: dict[int, int] = {}
        """Anthropic block index -> OpenAI tool-call index."""

    def chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        """One chat chunk with `delta` for choice 0."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def chunks(self, data: JSON) -> list[JSON | str]:
        """The chunks for one Anthropic event."""
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id", "")
            self.model = message.get("model") or self.model
            self.usage.update(message.get("usage") or {})
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []
            index = self.tools[data.get("index", 0)] = len(self.tools)
            call = {"index": index, **tool_call(block.get("id", ""), block.get("name", ""), "")}
            return [self.chunk({"tool_calls": [call]})]
        if kind == "content_block_delta":
            return self.delta(data.get("index", 0), data.get("delta") or {})
        if kind == "message_delta":
            self.usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            return [self.chunk({}, STOP_TO_FINISH.get(reason, "stop"))]
        if kind == "message_stop":
            out: list[JSON | str] = []
            if self.include_usage:
                usage = anthropic_usage_to_chat(self.usage)
                out.append({**self.chunk({}), "choices": [], "usage": usage})
            out.append("[DONE]")
            return out
        if kind == "error":
            error = data.get("error") or {}
            message = error.get("message", "upstream error")
            kind = error.get("type", "api_error")
            return [{"error": {"message": message, "type": kind, "param": None, "code": None}}]
        return []

    def delta(self, index: int, delta: JSON) -> list[JSON | str]:
        """The chunk for one content_block_delta."""
        kind = delta.get("type")
        if kind == "text_delta":
            return [self.chunk({"content": delta.get("text", "")})]
        if kind == "input_json_delta" and index in self.tools:
            call = {
                "index": self.tools[index],
                "function": {"arguments": delta.get("partial_json", "")},
            }
            return [self.chunk({"tool_calls": [call]})]
        if kind == "thinking_delta":
            return [self.chunk({"reasoning_content": delta.get("thinking", "")})]
        return []


class OpenAIFraming(StreamConverter):
    """Chat chunk objects from a source (e.g. :class:`ChatFromMessages`) as OpenAI SSE."""

    def __init__(self, source: ChunkSource) -> None:
        self.source = source

    def event(self, data: JSON) -> list[bytes]:
        """The source's chunks for one upstream event, framed."""
        return [openai_event(chunk) for chunk in self.source.chunks(data)]


class Chained(StreamConverter):
    """Upstream events -> chat chunk objects (`source`) -> the client's events (`sink`)."""

    def __init__(self, source: ChunkSource, sink: StreamConverter) -> None:
        self.source = source
        self.sink = sink

    def event(self, data: JSON) -> list[bytes]:
        """The sink's events for the chunks of one upstream event."""
        out: list[bytes] = []
        for chunk in self.source.chunks(data):
            out.extend(self.sink.done() if isinstance(chunk, str) else self.sink.event(chunk))
        return out

    def error_event(self, body: bytes) -> bytes | None:
        """The sink's framing of a failure."""
        return self.sink.error_event(body)


class MessagesFromChat(FromChatChunks):
    """OpenAI chat completion chunks -> Anthropic Messages events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.blocks = 0
        """Blocks opened so far (the next block's index)."""
        self.open: tuple[str, int] | None = None
        """The open block: its kind (`text`, `thinking`, `tool`) and the tool-call index."""
        self.tools: dict[int, int] = {}
        """OpenAI tool-call index -> Anthropic block index."""
        self.finish: str | None = None
        self.usage: JSON = {}

    def start(self, data: JSON) -> list[bytes]:
        """`message_start`, once, from the first chunk."""
        if self.started:
            return []
        self.started = True
        message = {
            "id": data.get("id", ""),
            "type": "message",
            "role": "assistant",
            "model": data.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [anthropic_event({"type": "message_start", "message": message})]

    def close(self) -> list[bytes]:
        """`content_block_stop` for the open block, if any."""
        if self.open is None:
            return []
        self.open = None
        return [anthropic_event({"type": "content_block_stop", "index": self.blocks - 1})]

    def open_block(self, kind: str, block: JSON, tool: int = -1) -> list[bytes]:
        """Close the open block and start a new one."""
        out = self.close()
        self.open = (kind, tool)
        out.append(
            anthropic_event(
                {"type": "content_block_start", "index": self.blocks, "content_block": block}
            )
        )
        self.blocks += 1
        return out

    def text(self, kind: str, piece: str) -> list[bytes]:
        """A text or thinking piece, in its block (opened when another kind was open)."""
        out: list[bytes] = []
        if self.open is None or self.open[0] != kind:
            block: JSON = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            out = self.open_block(kind, block)
        delta: JSON = (
            {"type": "text_delta", "text": piece}
            if kind == "text"
            else {"type": "thinking_delta", "thinking": piece}
        )
        out.append(
            anthropic_event(
                {"type": "content_block_delta", "index": self.blocks - 1, "delta": delta}
            )
        )
        return out

    def tool(self, call: JSON) -> list[bytes]:
        """A `delta.tool_calls[i]` piece: a new tool_use block, or arguments for one."""
        out: list[bytes] = []
        index = call.get("index", 0)
        function = call.get("function") or {}
        if index not in self.tools:
            block = {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": {},
            }
            out = self.open_block("tool", block, index)
            self.tools[index] = self.blocks - 1
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(
                anthropic_event(
                    {"type": "content_block_delta", "index": self.tools[index], "delta": delta}
                )
            )
        return out

    def error(self, message: str) -> list[bytes]:
        """An Anthropic `error` event."""
        return [
            anthropic_event({"type": "error", "error": {"type": "api_error", "message": message}})
        ]

    def delta(self, delta: JSON) -> list[bytes]:
        """The events for a chat delta's thinking, text and tool-call pieces."""
        out: list[bytes] = []
        if delta.get("reasoning_content"):
            out.extend(self.text("thinking", delta["reasoning_content"]))
        if delta.get("content"):
            out.extend(self.text("text", delta["content"]))
        for call in delta.get("tool_calls") or []:
            out.extend(self.tool(call))
        return out

    def done(self) -> list[bytes]:
        """The closing events, at the upstream's `data: [DONE]`."""
        out = self.start({}) + self.close()
        usage = chat_usage_to_anthropic(self.usage)
        delta = {
            "stop_reason": FINISH_TO_STOP.get(self.finish or "stop", "end_turn"),
            "stop_sequence": None,
        }
        out.append(anthropic_event({"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(anthropic_event({"type": "message_stop"}))
        return out
