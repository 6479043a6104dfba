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
from tokone.providers.base import Adapter, StreamRelay, UpstreamReply, relayed_headers, sse_data

PATHS: dict[str, str] = {
    "chat.completions": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
    "responses": "/responses",
    "responses.input_tokens": "/responses/input_tokens",
}
STRIP_USAGE = "openai.strip_usage"


def usage_from_openai(data: dict[str, Any]) -> Usage | None:
    """Read a chat/completions/embeddings (`prompt_tokens`) or Responses (`input_tokens`) usage."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage:
        details = usage.get("input_tokens_details") or {}
        result = Usage(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cached_input_tokens=int(details.get("cached_tokens") or 0),
        )
    else:
        details = usage.get("prompt_tokens_details") or {}
        result = Usage(
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            cached_input_tokens=int(details.get("cached_tokens") or 0),
        )
    tier = data.get("service_tier")
    result.service_tier = tier if isinstance(tier, str) else None
    return result


class _Delta(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta | None = None
    text: str | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []


_chunk_decoder = msgspec.json.Decoder(_Chunk)


class ChatStreamRelay(StreamRelay):
    """`data:` chunks of chat/completions (and legacy completions) streams."""

    def on_event(self, event: bytes) -> bytes | None:
        """Count delivered text, read the usage chunk, drop it if the client did not ask."""
        data = sse_data(event)
        if data is None:
            return event
        if data == b"[DONE]":
            self.finished = True
            return event
        if b'"usage":{' in data or b'"usage": {' in data:
            parsed = msgspec.json.decode(data)
            usage = usage_from_openai(parsed)
            if usage is not None:
                self.usage, self.saw_usage = usage, True
                if self.call.extra.get(STRIP_USAGE) and not parsed.get("choices"):
                    return None
        try:
            chunk = _chunk_decoder.decode(data)
        except msgspec.DecodeError:
            return event
        for choice in chunk.choices:
            text = choice.delta.content if choice.delta else choice.text
            if text:
                self.delivered_chars += len(text)
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
                usage = usage_from_openai(parsed.get("response") or {})
                if usage is not None:
                    self.usage, self.saw_usage = usage, True
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
        usage = Usage()
        if content[:1] == b"{":
            parsed = msgspec.json.decode(content)
            usage = usage_from_openai(parsed) or usage
            if call.endpoint == "responses.input_tokens":
                usage = Usage()
        return UpstreamReply(
            status=response.status_code, headers=headers, body=content, usage=usage
        )


@hookimpl
def register_providers() -> dict[str, type[Adapter]]:
    """The `openai` wire format."""
    return {"openai": OpenAIAdapter}
