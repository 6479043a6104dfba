"""What every built-in translator shares: the wrapping adapter, the stream relay, SSE framing.

A :class:`Translation` describes one direction (client family and endpoint -> upstream family
and endpoint) as three pure pieces: the request converter, the whole-reply converter and a
factory of :class:`StreamConverter` (upstream event in, client events out). A
:class:`TranslatingAdapter` puts one in front of a channel's native adapter: the request is
converted, sent by the native adapter (its URL, credentials, timeouts, pool and usage
parser), and the reply converted back. The usage billed is the one the native adapter read
from the upstream's reply, so a translated call costs what the same call made natively does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec
from tokone.core.errors import GatewayError
from tokone.core.types import Call, Family
from tokone.core.upstream import Adapter, StreamRelay, UpstreamError, UpstreamReply, sse_data

JSON = dict[str, Any]
STREAM_ACTION = "streamGenerateContent"
USAGE_KEY = "translate.usage"
"""`call.extra` key: the usage billed for a whole reply, left for the reply converter."""


def refuse(field: str, why: str) -> GatewayError:
    """The 400 for a request field the target family cannot express, naming the field."""
    return GatewayError(
        "invalid_request",
        f"'{field}' cannot be translated for this model's upstream: {why}",
        param=field,
    )


def dumps(value: Any) -> str:
    """Compact JSON text (tool-call arguments, as the providers send them)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def tool_call(call_id: str, name: str, arguments: str) -> JSON:
    """An OpenAI chat tool call (`arguments` is JSON text)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_use_call(block: JSON) -> JSON:
    """An Anthropic `tool_use` block as an OpenAI chat tool call."""
    return tool_call(block.get("id", ""), block.get("name", ""), dumps(block.get("input") or {}))


def openai_event(payload: JSON | str) -> bytes:
    """One OpenAI SSE event (`data: {...}`, or `data: [DONE]` for the string)."""
    data = payload.encode() if isinstance(payload, str) else msgspec.json.encode(payload)
    return b"data: " + data + b"\n\n"


def anthropic_event(payload: JSON) -> bytes:
    """One Anthropic SSE event: `event: <type>` and its JSON."""
    return (
        b"event: " + payload["type"].encode() + b"\ndata: " + msgspec.json.encode(payload) + b"\n\n"
    )


class StreamConverter:
    """Turns the upstream's stream into the client's, one upstream event at a time."""

    def event(self, data: JSON) -> list[bytes]:
        """The client events for one decoded upstream event."""
        raise NotImplementedError

    def done(self) -> list[bytes]:
        """The client events for the upstream's `data: [DONE]` (OpenAI upstreams)."""
        return []

    def error_event(self, body: bytes) -> bytes | None:
        """The client's framing of the error `body` ending a failed stream (None: the
        family's SSE error event)."""
        return None


class FromChatChunks(StreamConverter):
    """A converter of OpenAI chat completion chunks: keeps the last `usage` and finish reason
    and hands the rest of each chunk to the subclass's :meth:`start`, :meth:`delta` and
    :meth:`error`."""

    finish: str | None
    usage: JSON

    def start(self, data: JSON) -> list[bytes]:
        """The client events that open the stream, from its first chunk (none after)."""
        raise NotImplementedError

    def delta(self, delta: JSON) -> list[bytes]:
        """The client events for one `choices[0].delta`."""
        raise NotImplementedError

    def error(self, message: str) -> list[bytes]:
        """The client events for an error chunk with this message."""
        raise NotImplementedError

    def event(self, data: JSON) -> list[bytes]:
        """The client events for one chat chunk."""
        if "error" in data and "choices" not in data:
            error = data.get("error") or {}
            message = (
                error.get("message", "upstream error") if isinstance(error, dict) else str(error)
            )
            return self.error(message)
        out = self.start(data)
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            out.extend(self.delta(choice.get("delta") or {}))
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out


@dataclass(frozen=True, slots=True)
class Translation:
    """One direction: which client calls it takes and how it converts each part."""

    source: Family
    endpoints: frozenset[str]
    """The client endpoints taken (`chat.completions`; Gemini's two generate actions)."""
    target: Family
    target_endpoint: str
    """The upstream endpoint (a Gemini stream goes to `streamGenerateContent`)."""
    request: Callable[[JSON], JSON]
    """Client body -> upstream body (raises GatewayError for what cannot be translated)."""
    reply: Callable[[JSON, Call], JSON]
    """Upstream whole reply -> client reply."""
    stream: Callable[[Call], StreamConverter] | None = None
    """A fresh converter for one stream (None for endpoints that do not stream: counts)."""
    estimate: bool = False
    """Answer without the upstream (a count for a channel that has no counter)."""


class TranslatedRelay(StreamRelay):
    """The native adapter's relay (usage, completion, delivered text) with converted events.

    Every upstream event the native relay lets through is decoded and handed to the
    converter; what the client receives is only the converter's output. The usage and the
    stream's state are the native relay's, copied after every chunk.
    """

    def __init__(self, call: Call, inner: StreamRelay, converter: StreamConverter) -> None:
        super().__init__(call)
        self.inner = inner
        self.converter = converter

    def feed(self, chunk: bytes) -> bytes:
        """Accept upstream bytes; return the client events they complete."""
        return self._convert(self.inner.feed(chunk))

    def finish(self) -> bytes:
        """Convert what the upstream left unterminated."""
        return self._convert(self.inner.finish())

    def error_event(self, body: bytes) -> bytes | None:
        """The converter's framing of the error (the client's, not the upstream's)."""
        return self.converter.error_event(body)

    def _convert(self, block: bytes) -> bytes:
        out: list[bytes] = []
        for event in block.split(b"\n\n") if block else ():
            data = sse_data(event) if event else None
            if data is None or not data.strip():
                continue
            if data == b"[DONE]":
                out.extend(self.converter.done())
                continue
            try:
                decoded = msgspec.json.decode(data)
            except msgspec.DecodeError:
                continue
            if isinstance(decoded, dict):
                out.extend(self.converter.event(decoded))
        inner = self.inner
        self.usage, self.saw_input, self.saw_output = inner.usage, inner.saw_input, inner.saw_output
        self.delivered_chars = inner.delivered_chars
        self.finished = inner.finished
        return b"".join(out)


class TranslatingAdapter(Adapter):
    """Serves `translation.source` calls through a channel's native adapter of another family."""

    name: ClassVar[str] = "translate"

    def __init__(self, inner: Adapter, translation: Translation) -> None:
        super().__init__(inner.provider)
        self.inner = inner
        self.translation = translation

    def supports(self, call: Call) -> bool:
        """Calls of the translation's client family and endpoints."""
        return (
            call.family is self.translation.source and call.endpoint in self.translation.endpoints
        )

    def upstream_call(self, call: Call, upstream_model: str) -> Call:
        """The call as the channel's family would have made it (same id, account, stream).

        Streaming is the target family's way: `stream` (and, for OpenAI, the usage chunk
        the gateway bills from) in the body, or Gemini's `streamGenerateContent` action.
        """
        translation = self.translation
        body = translation.request(call.json())
        endpoint = translation.target_endpoint
        body.pop("stream", None)
        if translation.target is Family.GEMINI:
            if call.stream:
                endpoint = STREAM_ACTION
            name = f"models/{upstream_model}"
            nested = body.get("generateContentRequest")
            if isinstance(nested, dict):  # a countTokens request names its model inside
                nested["model"] = name
            for request in body.get("requests") or ():  # so does each of a batch
                request["model"] = name
        else:
            body["model"] = upstream_model
            if call.stream:
                body["stream"] = True
                if translation.target is Family.OPENAI:
                    body["stream_options"] = {"include_usage": True}
        return Call(
            request_id=call.request_id,
            family=translation.target,
            endpoint=endpoint,
            model=upstream_model,
            raw=msgspec.json.encode(body),
            stream=call.stream,
            principal=call.principal,
            service_tier=call.service_tier,
            max_output_tokens=call.max_output_tokens,
            started=call.started,
            _json=body,
        )

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """Convert the request, send it natively, convert the reply (or wrap its stream)."""
        upstream = self.upstream_call(call, upstream_model)
        reply = await self.inner.send(upstream, upstream_model)
        if reply.stream is not None and reply.relay is not None:
            if self.translation.stream is None:
                await reply.aclose()
                raise UpstreamError(f"{self.provider.name}: unexpected stream", status=502)
            reply.relay = TranslatedRelay(call, reply.relay, self.translation.stream(call))
            return reply
        try:
            decoded = msgspec.json.decode(reply.body)
        except msgspec.DecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            raise UpstreamError(
                f"{self.provider.name}: the upstream's reply is not JSON", status=502
            )
        call.extra[USAGE_KEY] = reply.usage  # for converters that report it (embeddings)
        body = msgspec.json.encode(self.translation.reply(decoded, call))
        headers = {**reply.headers, "content-type": "application/json"}
        return UpstreamReply(status=reply.status, headers=headers, body=body, usage=reply.usage)
