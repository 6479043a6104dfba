"""The `anthropic` adapter: Anthropic's Messages API (api.anthropic.com or a compatible server).

`base_url` is the server root, as for the `anthropic` SDK (``https://api.anthropic.com``);
the adapter appends ``/v1/messages`` (a base URL that already ends in ``/v1`` works too).
The upstream is authenticated with the provider's own key as ``x-api-key``, never the
client's; the client's ``anthropic-version`` and ``anthropic-beta`` headers and its
``?beta=true`` marker, stashed on ``call.extra`` at ingress, are forwarded. Bodies pass
through untouched except for the model name, rewritten only when the route maps it.

Anthropic's ``input_tokens`` leaves out prompt-cache writes and reads, so the gateway counts
``input = input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` and
``cached input = cache_read_input_tokens``. Streams carry the usage in ``message_start``
and, cumulatively, in ``message_delta``, which overrides it.
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
    "messages": "/messages",
    "messages.count_tokens": "/messages/count_tokens",
}
DEFAULT_VERSION = "2023-06-01"
TIERS = {"standard": "default"}
"""Anthropic's service-tier names -> the gateway's (`[billing] service_tiers`)."""


class AnthropicUsage(msgspec.Struct):
    """Anthropic's `usage` object (every field may be absent or null in a `message_delta`).

    The counts are read as any JSON value and made sane with :meth:`sane` before use, so a
    broken upstream count never fails the decoding of the event that carries it.
    """

    input_tokens: Any = None
    output_tokens: Any = None
    cache_creation_input_tokens: Any = None
    cache_read_input_tokens: Any = None
    service_tier: Any = None

    def sane(self, call: Call) -> AnthropicUsage:
        """These counts with every insane one (see `sane_count`) taken as not reported."""
        tier = self.service_tier
        return AnthropicUsage(
            input_tokens=sane_count(call, "input_tokens", self.input_tokens),
            output_tokens=sane_count(call, "output_tokens", self.output_tokens),
            cache_creation_input_tokens=sane_count(
                call, "cache_creation_input_tokens", self.cache_creation_input_tokens
            ),
            cache_read_input_tokens=sane_count(
                call, "cache_read_input_tokens", self.cache_read_input_tokens
            ),
            service_tier=tier if isinstance(tier, str) else None,
        )

    def merge(self, later: AnthropicUsage) -> AnthropicUsage:
        """These numbers overridden by the fields `later` carries (cumulative stream usage)."""
        return AnthropicUsage(
            input_tokens=_first(later.input_tokens, self.input_tokens),
            output_tokens=_first(later.output_tokens, self.output_tokens),
            cache_creation_input_tokens=_first(
                later.cache_creation_input_tokens, self.cache_creation_input_tokens
            ),
            cache_read_input_tokens=_first(
                later.cache_read_input_tokens, self.cache_read_input_tokens
            ),
            service_tier=later.service_tier or self.service_tier,
        )

    def to_usage(self) -> Usage:
        """The gateway's view: input includes cache writes and reads; cached = cache reads."""
        cached = self.cache_read_input_tokens or 0
        written = self.cache_creation_input_tokens or 0
        tier = self.service_tier
        return Usage(
            input_tokens=(self.input_tokens or 0) + written + cached,
            output_tokens=self.output_tokens or 0,
            cached_input_tokens=cached,
            service_tier=TIERS.get(tier, tier) if tier else None,
        )


def _first(value: int | None, fallback: int | None) -> int | None:
    return fallback if value is None else value


class _Message(msgspec.Struct):
    usage: AnthropicUsage | None = None


class _Delta(msgspec.Struct):
    text: str | None = None
    thinking: str | None = None
    partial_json: str | None = None


class _Event(msgspec.Struct):
    type: str = ""
    message: _Message | None = None
    delta: _Delta | None = None
    usage: AnthropicUsage | None = None


_message_decoder = msgspec.json.Decoder(_Message)
_event_decoder = msgspec.json.Decoder(_Event)


class _Block(msgspec.Struct):
    text: Any = None
    thinking: Any = None
    input: msgspec.Raw = msgspec.Raw()  # a `Raw | None` union refuses an object

    def chars(self) -> int:
        """Characters of generated text, thinking and tool input in this content block."""
        text = self.text if isinstance(self.text, str) else ""
        thinking = self.thinking if isinstance(self.thinking, str) else ""
        return len(text) + len(thinking) + len(self.input)


class _Reply(msgspec.Struct):
    usage: AnthropicUsage | None = None
    content: list[_Block] = []


_reply_decoder = msgspec.json.Decoder(_Reply)


def usage_from_message(content: bytes, call: Call) -> Usage:
    """The usage of a whole (non-stream) Messages response body, completed.

    A side the upstream did not report (no usage object, a count missing or insane) is
    estimated, the input from the request and the output from the reply's text, thinking
    and tool input, and the usage is marked estimated.
    """
    try:
        reply = _reply_decoder.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Usage().estimate_missing(call.input_estimate, len(content))
    raw = reply.usage.sane(call) if reply.usage is not None else AnthropicUsage()
    usage = raw.to_usage()
    input_seen = raw.input_tokens is not None
    if raw.output_tokens is not None and input_seen:
        return usage
    chars = None
    if raw.output_tokens is None:
        chars = sum(block.chars() for block in reply.content)
    return usage.estimate_missing(None if input_seen else call.input_estimate, chars)


class MessagesStreamRelay(StreamRelay):
    """Messages SSE (`event:` lines kept, bytes relayed untouched); usage read on the way.

    `message_start` gives the input side (the exact input count should the stream be cut:
    the input is then seen, the output still to be estimated); the cumulative
    `message_delta` usage overrides it and makes the output final. Generated text,
    thinking and tool-input deltas are counted for estimating the output of a cut stream.
    """

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self._raw = AnthropicUsage()

    def on_event(self, event: bytes) -> bytes | None:
        """Read usage, count deltas, note `message_stop`; always relay the event."""
        data = sse_data(event)
        if data is None:
            return event
        try:
            parsed = _event_decoder.decode(data)
        except msgspec.DecodeError:
            return event
        kind = parsed.type
        if kind == "content_block_delta" and parsed.delta is not None:
            delta = parsed.delta
            self.delivered_chars += len(delta.text or delta.thinking or delta.partial_json or "")
        elif kind == "message_start" and parsed.message and parsed.message.usage is not None:
            self._raw = self._raw.merge(parsed.message.usage.sane(self.call))
            self.usage = self._raw.to_usage()
            self.saw_input = self._raw.input_tokens is not None
        elif kind == "message_delta" and parsed.usage is not None:
            later = parsed.usage.sane(self.call)
            self._raw = self._raw.merge(later)
            self.usage = self._raw.to_usage()
            self.saw_input = self._raw.input_tokens is not None
            self.saw_output = later.output_tokens is not None
        elif kind == "message_stop":
            self.finished = True
        return event


class AnthropicAdapter(Adapter):
    """A server speaking Anthropic's Messages API at `base_url` (the root, without `/v1`)."""

    name: ClassVar[str] = "anthropic"
    families: ClassVar[frozenset[Family]] = frozenset({Family.ANTHROPIC})

    def supports(self, call: Call) -> bool:
        """Anthropic-family calls on the endpoints in PATHS."""
        return call.family is Family.ANTHROPIC and call.endpoint in PATHS

    def path(self, call: Call) -> str:
        """The upstream path (and `?beta=true` marker) for `call`."""
        version = "" if self.provider.base_url.rstrip("/").endswith("/v1") else "/v1"
        query = "?beta=true" if call.beta_query else ""
        return version + PATHS[call.endpoint] + query

    def upstream_headers(self, call: Call) -> dict[str, str]:
        """Our own key as `x-api-key`, and the client's API version and beta flags."""
        headers = {
            "content-type": "application/json",
            "anthropic-version": call.api_version or DEFAULT_VERSION,
        }
        if self.provider.api_key:
            headers["x-api-key"] = self.provider.api_key
        if beta := call.beta:
            headers["anthropic-beta"] = beta
        return headers

    @staticmethod
    def upstream_body(call: Call, upstream_model: str) -> bytes:
        """The client's body, re-encoded only when the upstream model name differs."""
        if upstream_model == call.model:
            return call.raw
        return msgspec.json.encode({**call.json(), "model": upstream_model})

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """POST the call upstream; relay a stream or read the whole body and its usage."""
        body = self.upstream_body(call, upstream_model)
        response = await self.post(
            self.path(call), body, self.upstream_headers(call), stream=call.stream
        )
        if call.stream:
            return self.stream_reply(response, MessagesStreamRelay(call))
        headers = relayed_headers(response)
        content = response.content
        usage = usage_from_message(content, call) if call.endpoint == "messages" else Usage()
        return UpstreamReply(
            status=response.status_code, headers=headers, body=content, usage=usage
        )


@hookimpl
def register_providers() -> dict[str, type[Adapter]]:
    """The `anthropic` wire format."""
    return {"anthropic": AnthropicAdapter}
