"""The `openai` adapter: any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, DeepSeek, ...).

Bodies pass through unchanged except for the model name the route maps to and, for streamed
chat, ``stream_options.include_usage``: the gateway always asks for the usage chunk and strips
it again when the client did not ask for it, so metering never depends on the client.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Family, Usage
from tokone.core.upstream import (
    Adapter,
    StreamRelay,
    UpstreamReply,
    relayed_headers,
    sane_count,
    sse_data,
)

PATHS: dict[str, str] = {
    "chat.completions": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
    "responses.input_tokens": "/responses/input_tokens",
}
STRIP_USAGE = "openai.strip_usage"


def usage_from_openai(data: dict[str, Any], call: Call) -> tuple[Usage, bool, bool] | None:
    """Read a chat/completions/embeddings (`prompt_tokens`) or Responses (`input_tokens`) usage.

    Returns (usage, input seen, output seen), or None without a usage object. A side is
    seen only when its count is there and sane (see `sane_count`); an insane one counts 0
    and is left for the gateway to estimate.
    """
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage:
        names = ("input_tokens", "output_tokens", "input_tokens_details")
    else:
        names = ("prompt_tokens", "completion_tokens", "prompt_tokens_details")
    details = usage.get(names[2])
    details = details if isinstance(details, dict) else {}
    inp = sane_count(call, names[0], usage.get(names[0]))
    out = sane_count(call, names[1], usage.get(names[1]))
    cached = sane_count(call, "cached_tokens", details.get("cached_tokens")) or 0
    result = Usage(
        input_tokens=inp or 0,
        output_tokens=out or 0,
        cached_input_tokens=min(cached, inp or 0),
    )
    tier = data.get("service_tier")
    result.service_tier = tier if isinstance(tier, str) else None
    return result, inp is not None, out is not None


TEXT_KEYS = frozenset({"content", "text", "refusal", "reasoning_content", "arguments", "summary"})
"""Keys of a whole reply whose strings are generated text (for estimating its output)."""


def output_chars(value: Any) -> int:
    """Characters of generated text in a whole reply's `choices` or `output` value.

    Walks with a stack, not recursion: a deeply nested reply cannot raise RecursionError.
    """
    chars = 0
    stack: list[tuple[str | None, Any]] = [(None, value)]
    while stack:
        key, item = stack.pop()
        if isinstance(item, str):
            chars += len(item) if key in TEXT_KEYS else 0
        elif isinstance(item, list):
            stack.extend((key, v) for v in item)
        elif isinstance(item, dict):
            stack.extend(item.items())
    return chars


def reply_usage(call: Call, content: bytes) -> Usage:
    """The usage to bill for a whole (non-stream) reply: the upstream's, completed.

    A side the upstream did not report (no usage object, a count missing or insane) is
    estimated: the input from the request, the output from the reply's text; the usage is
    then marked estimated. `responses/input_tokens` is free; embeddings have no output.
    """
    if call.endpoint == "responses.input_tokens":
        return Usage()
    try:
        parsed = msgspec.json.decode(content)
    except msgspec.DecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        chars = None if call.endpoint == "embeddings" else len(content)
        return Usage().estimate_missing(call.input_estimate, chars)
    usage, input_seen, output_seen = usage_from_openai(parsed, call) or (Usage(), False, False)
    output_seen = output_seen or call.endpoint == "embeddings"
    if input_seen and output_seen:
        return usage
    chars = None
    if not output_seen:
        chars = output_chars(parsed.get("choices")) + output_chars(parsed.get("output"))
    return usage.estimate_missing(None if input_seen else call.input_estimate, chars)


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_chunk_decoder = msgspec.json.Decoder(_Chunk)


def carries_usage(data: bytes) -> bool:
    """Whether stream bytes may hold a usage object: a `"usage"` key that is not only ever
    `null` (OpenAI sends `"usage":null` on every content chunk when usage is asked for).
    Byte counts only, so content chunks are never parsed for it."""
    keys = data.count(b'"usage"')
    return keys > 0 and keys != data.count(b'"usage":null') + data.count(b'"usage": null')


_chunks_decoder = msgspec.json.Decoder(list[_Chunk])
PENDING_BYTES = 32 * 1024
"""Relayed content events kept uncounted per stream before their text is counted."""


class ChatStreamRelay(StreamRelay):
    """`data:` chunks of chat/completions (and legacy completions) streams.

    Only an event that can carry the usage (:func:`carries_usage`) or end the stream (`[DONE]`) is
    parsed as it passes; a block of other events is relayed untouched after two byte
    checks, and the text it delivered is counted later, in one decode for many events:
    when the stream is cut before the usage arrived (`delivered_chars` is read to estimate
    the output) or once `PENDING_BYTES` are waiting.
    """

    def __init__(self, call: Call) -> None:
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._chars = 0
        super().__init__(call)

    @property
    def delivered_chars(self) -> int:
        """Characters of generated text sent to the client (counts the pending events)."""
        if self._pending:
            self._count_pending()
        return self._chars

    @delivered_chars.setter
    def delivered_chars(self, value: int) -> None:
        self._chars = value

    def _relay(self, block: bytes) -> bytes:
        if carries_usage(block) or b"[DONE]" in block:
            return super()._relay(block)
        self._pending.append(block)
        self._pending_size += len(block)
        if self._pending_size > PENDING_BYTES:
            self._count_pending()
        return block

    def _count_pending(self) -> None:
        """Count the text of the pending content events (each as `on_event` would)."""
        blocks, self._pending, self._pending_size = self._pending, [], 0
        datas = [
            data
            for event in b"".join(blocks).split(b"\n\n")
            if event and (data := sse_data(event)) is not None
        ]
        try:
            chunks = _chunks_decoder.decode(b"[" + b",".join(datas) + b"]")
        except msgspec.DecodeError:
            chunks = []
        if len(chunks) != len(datas):  # an event that is not one JSON object: one by one
            chunks = []
            for data in datas:
                try:
                    chunks.append(_chunk_decoder.decode(data))
                except msgspec.DecodeError:
                    continue
        chars = 0
        for chunk in chunks:
            for choice in chunk.choices:
                text = choice.delta.content if choice.delta else choice.text
                if text:
                    chars += len(text)
        self._chars += chars

    def on_event(self, event: bytes) -> bytes | None:
        """Count delivered text, read the usage chunk, drop it if the client did not ask."""
        data = sse_data(event)
        if data is None:
            return event
        if data == b"[DONE]":
            self.finished = True
            return event
        if carries_usage(data):
            parsed = msgspec.json.decode(data)
            reported = usage_from_openai(parsed, self.call)
            if reported is not None:
                self.usage, self.saw_input, self.saw_output = reported
                if self.call.extra.get(STRIP_USAGE) and not parsed.get("choices"):
                    return None
        try:
            chunk = _chunk_decoder.decode(data)
        except msgspec.DecodeError:
            return event
        for choice in chunk.choices:
            text = choice.delta.content if choice.delta else choice.text
            if text:
                self._chars += len(text)  # not the property: that would count the pending
        return event


class ResponsesStreamRelay(StreamRelay):
    """Responses API SSE: `event:` lines kept; usage from the terminal event."""

    TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
    _MARKERS = tuple(kind.encode() for kind in TERMINAL)

    def on_event(self, event: bytes) -> bytes | None:
        """Count text deltas and read usage from the terminal event."""
        data = sse_data(event)
        if data is None:
            return event
        if b'"response.output_text.delta"' in data:
            delta = msgspec.json.decode(data).get("delta") or ""
            self.delivered_chars += len(delta)
        elif any(marker in data for marker in self._MARKERS):
            # the names also occur in echoed text (instructions): only the type decides
            parsed = msgspec.json.decode(data)
            if parsed.get("type") in self.TERMINAL:
                reported = usage_from_openai(parsed.get("response") or {}, self.call)
                if reported is not None:
                    self.usage, self.saw_input, self.saw_output = reported
                self.finished = True
        return event


class OpenAIAdapter(Adapter):
    """Any server speaking the OpenAI HTTP API under `base_url` (which includes `/v1`)."""

    name: ClassVar[str] = "openai"
    families: ClassVar[frozenset[Family]] = frozenset({Family.OPENAI})

    def supports(self, call: Call) -> bool:
        """OpenAI-family calls on the endpoints in PATHS."""
        return call.family is Family.OPENAI and call.endpoint in PATHS

    def upstream_headers(self) -> dict[str, str]:
        """Headers for the upstream: our own key, never the client's."""
        headers = {"content-type": "application/json"}
        if self.provider.api_key:
            headers["authorization"] = f"Bearer {self.provider.api_key}"
        return headers

    def upstream_body(self, call: Call, upstream_model: str) -> bytes:
        """The client's body, re-encoded only when the model name or stream options change."""
        needs_usage = call.stream and call.endpoint in ("chat.completions", "completions")
        if upstream_model == call.model and not needs_usage:
            return call.raw
        body = dict(call.json())
        body["model"] = upstream_model
        if needs_usage:
            options = dict(body.get("stream_options") or {})
            if not options.get("include_usage"):
                options["include_usage"] = True
                call.extra[STRIP_USAGE] = True
            body["stream_options"] = options
        return msgspec.json.encode(body)

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """POST the call to its OpenAI path; relay a stream or read the whole body."""
        path = PATHS[call.endpoint]
        body = self.upstream_body(call, upstream_model)
        response = await self.post(path, body, self.upstream_headers(), stream=call.stream)
        if call.stream:
            relay_class = ResponsesStreamRelay if call.endpoint == "responses" else ChatStreamRelay
            return self.stream_reply(response, relay_class(call))
        headers = relayed_headers(response)
        content = response.content
        return UpstreamReply(
            status=response.status_code,
            headers=headers,
            body=content,
            usage=reply_usage(call, content),
        )


class ChatOnlyAdapter(OpenAIAdapter):
    """An OpenAI-compatible server without the Responses API (DeepSeek, many vLLM setups):
    `responses` calls are left to a translator (`tokone.plugins.translate`)."""

    name: ClassVar[str] = "openai-chat"

    def supports(self, call: Call) -> bool:
        """OpenAI-family calls on the PATHS endpoints other than the Responses API."""
        return super().supports(call) and not call.endpoint.startswith("responses")


@hookimpl
def register_providers() -> dict[str, type[Adapter]]:
    """The `openai` wire format, and `openai-chat` for servers without /responses."""
    return {"openai": OpenAIAdapter, "openai-chat": ChatOnlyAdapter}
