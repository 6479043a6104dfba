"""The `gemini` adapter: Google's Gemini API (generativelanguage.googleapis.com) and look-alikes.

`base_url` is the host without a version (``https://generativelanguage.googleapis.com``);
the adapter appends ``/{version}/models/{upstream_model}:{action}`` with the API version the
client used (``v1beta`` or ``v1``). The model is in the URL, so bodies pass through untouched;
only the per-request ``model`` fields of a batch (which must match the URL) are rewritten when
the route maps the model to another upstream name. Upstream auth is the provider's own key in
``x-goog-api-key``, never the client's.

Usage comes from ``usageMetadata``: input = ``promptTokenCount`` (which includes
``cachedContentTokenCount``) + ``toolUsePromptTokenCount``; output = ``candidatesTokenCount``
+ ``thoughtsTokenCount`` (thinking is billed as output). In a stream every chunk carries the
running totals, so the last one wins. Embeddings usually come back without usage: the gateway
estimates their input tokens from the text parts and marks the usage as estimated (and does
the same for any reply an upstream sends without usage).
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from tokone.core.errors import GatewayError
from tokone.core.hookspecs import hookimpl
from tokone.core.model_names import check_model
from tokone.core.tokens import estimate_tokens
from tokone.core.types import GEMINI_ACTIONS, Call, Family, Usage
from tokone.core.upstream import (
    Adapter,
    StreamRelay,
    UpstreamReply,
    relayed_headers,
    sane_count,
    sse_data,
)

GENERATE = "generateContent"
STREAM = "streamGenerateContent"
COUNT = "countTokens"
EMBED = "embedContent"
BATCH_EMBED = "batchEmbedContents"
ACTIONS = frozenset(GEMINI_ACTIONS)
DEFAULT_VERSION = "v1beta"
VERSIONS = frozenset({"v1beta", "v1"})


class UsageMetadata(msgspec.Struct):
    """The token counts of a Gemini `usageMetadata` object the gateway bills from.

    Field names here and in the other structs are the wire's camelCase names. Counts are
    read as any JSON value (a broken one must not lose the chunk's text) and made sane by
    :meth:`sane`; Google leaves zero counts out, so an absent count is None here.
    """

    promptTokenCount: Any = None
    candidatesTokenCount: Any = None
    thoughtsTokenCount: Any = None
    cachedContentTokenCount: Any = None
    toolUsePromptTokenCount: Any = None

    def sane(self, call: Call) -> UsageMetadata:
        """These counts with every insane one (see `sane_count`) taken as not reported."""
        return UsageMetadata(
            *(sane_count(call, name, getattr(self, name)) for name in self.__struct_fields__)
        )

    def usage(self) -> Usage:
        """As gateway usage: thoughts count as output, tool-use prompt tokens as input."""
        prompt = (self.promptTokenCount or 0) + (self.toolUsePromptTokenCount or 0)
        return Usage(
            input_tokens=prompt,
            output_tokens=(self.candidatesTokenCount or 0) + (self.thoughtsTokenCount or 0),
            cached_input_tokens=min(self.cachedContentTokenCount or 0, prompt),
        )


class _Part(msgspec.Struct):
    text: str | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct):
    content: _Content | None = None
    finishReason: str | None = None


class _PromptFeedback(msgspec.Struct):
    blockReason: str | None = None


class _Response(msgspec.Struct):
    candidates: list[_Candidate] = []
    usageMetadata: UsageMetadata | None = None
    promptFeedback: _PromptFeedback | None = None


_response_decoder = msgspec.json.Decoder(_Response)


def text_parts(value: Any) -> list[str]:
    """Every `text` string in a Gemini request value (contents, content, requests, ...).

    Walks with a stack, not recursion: a deeply nested body cannot raise RecursionError.
    """
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            text = item.get("text")
            if isinstance(text, str):
                found.append(text)
            stack.extend(v for k, v in item.items() if k != "text" and isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(reversed(item))
    return found


def estimated_input(body: dict[str, Any]) -> Usage:
    """Input tokens the gateway counts itself over a request's text parts (marked estimated)."""
    tokens = sum(estimate_tokens(text) for text in text_parts(body))
    return Usage(input_tokens=tokens, estimated=True)


def reply_usage(call: Call, body: bytes) -> Usage:
    """The usage to bill for a whole (non-stream) reply to `call`.

    `usageMetadata` when the reply has it; otherwise (embeddings, or an upstream that sends
    none) the gateway estimates the request's text and the reply's candidate text, and
    does the same for a side whose count is insane, or an output count left out although
    text came back. `countTokens` is free.
    """
    if call.endpoint == COUNT:
        return Usage()
    try:
        reply = _response_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        reply = _Response()
    chars = sum(
        len(part.text)
        for candidate in reply.candidates
        if candidate.content is not None
        for part in candidate.content.parts
        if part.text
    )
    if reply.usageMetadata is None:
        return Usage().estimate_missing(input_guess(call).input_tokens, chars)
    meta = reply.usageMetadata.sane(call)
    usage = meta.usage()
    input_seen = meta.promptTokenCount is not None
    output_seen = meta.candidatesTokenCount is not None or not chars
    if input_seen and output_seen:
        return usage
    estimate = None if input_seen else input_guess(call).input_tokens
    return usage.estimate_missing(estimate, None if output_seen else chars)


def input_guess(call: Call) -> Usage:
    """The estimated input of `call` over its text parts (over its raw size when the body is
    one only the upstream could read)."""
    try:
        return estimated_input(call.json())
    except GatewayError:
        return Usage(input_tokens=call.input_estimate, estimated=True)


class GeminiStreamRelay(StreamRelay):
    """`data:` chunks of `streamGenerateContent?alt=sse`; usage from the last chunk with it.

    A client that streamed without `?alt=sse` expects Google's other form, one JSON array of
    the same chunks; the relay rewrites each event into an array element for it.
    """

    def __init__(self, call: Call) -> None:
        super().__init__(call)
        self.array = call.json_array
        self.elements = 0

    def on_event(self, event: bytes) -> bytes | None:
        """Read usage, count delivered text, note the end (a finish or block reason)."""
        data = sse_data(event)
        if data is None:
            return None if self.array else event
        try:
            chunk = _response_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            chunk = _Response()
        for candidate in chunk.candidates:
            if candidate.content is not None:
                self.delivered_chars += sum(len(p.text) for p in candidate.content.parts if p.text)
            if candidate.finishReason:
                self.finished = True
        if chunk.promptFeedback is not None and chunk.promptFeedback.blockReason:
            self.finished = True  # a blocked prompt ends the stream with no candidates
        if chunk.usageMetadata is not None:
            # running totals, each side seen on its own: early chunks may carry the prompt
            # count only; the final chunk leaves out a zero output count
            meta = chunk.usageMetadata.sane(self.call)
            self.usage = meta.usage()
            self.saw_input = meta.promptTokenCount is not None
            self.saw_output = meta.candidatesTokenCount is not None or (
                self.finished
                and not self.delivered_chars
                and chunk.usageMetadata.candidatesTokenCount is None
            )
        if not self.array:
            return event
        self.elements += 1
        return (b"[" if self.elements == 1 else b",") + data

    def finish(self) -> bytes:
        """Flush the last event; close the JSON array of a completed array-form stream.

        An incomplete one stays open for :meth:`error_event` to close.
        """
        tail = super().finish()
        if self.array and self.finished:
            tail += b"]" if self.elements else b"[]"
        return tail

    def error_event(self, body: bytes) -> bytes | None:
        """In the JSON-array form the error is the array's last element, and closes it."""
        if not self.array:
            return None
        self.elements += 1
        return (b"[" if self.elements == 1 else b",") + body + b"]"


def upstream_body(call: Call, upstream_model: str) -> bytes:
    """The client's body; re-encoded only when a mapped model appears inside it."""
    if upstream_model == call.model or b'"model"' not in call.raw:
        return call.raw
    body = dict(call.json())
    name = f"models/{upstream_model}"
    if call.endpoint == BATCH_EMBED and isinstance(body.get("requests"), list):
        body["requests"] = [
            {**item, "model": name} if isinstance(item, dict) and "model" in item else item
            for item in body["requests"]
        ]
    nested = body.get("generateContentRequest")
    if isinstance(nested, dict) and "model" in nested:
        body["generateContentRequest"] = {**nested, "model": name}
    if "model" in body:
        body["model"] = name
    return msgspec.json.encode(body)


class GeminiAdapter(Adapter):
    """Google's Gemini API (or anything speaking it) under `base_url` (no version in it)."""

    name: ClassVar[str] = "gemini"
    families: ClassVar[frozenset[Family]] = frozenset({Family.GEMINI})

    def supports(self, call: Call) -> bool:
        """Gemini-family calls on the actions the adapter knows."""
        return call.family is Family.GEMINI and call.endpoint in ACTIONS

    def upstream_headers(self) -> dict[str, str]:
        """Headers for the upstream: our own key, never the client's."""
        headers = {"content-type": "application/json"}
        if self.provider.api_key:
            headers["x-goog-api-key"] = self.provider.api_key
        return headers

    @staticmethod
    def path(call: Call, upstream_model: str) -> str:
        """`/{version}/models/{model}:{action}`, streams always as SSE.

        Every part is checked before it goes into the path: the version and action are
        known words and the model one plain path segment (:func:`check_model`), so no
        model name can reach another path of the upstream with the gateway's key.
        """
        version = call.api_version or DEFAULT_VERSION
        if version not in VERSIONS or call.endpoint not in ACTIONS:
            raise GatewayError("not_found", f"Unknown Gemini path for {call.endpoint!r}.")
        path = f"/{version}/models/{check_model(upstream_model)}:{call.endpoint}"
        return path + "?alt=sse" if call.stream else path

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """POST the call to its Gemini path; relay a stream or read the whole body."""
        response = await self.post(
            self.path(call, upstream_model),
            upstream_body(call, upstream_model),
            self.upstream_headers(),
            stream=call.stream,
        )
        if call.stream:
            return self.stream_reply(response, GeminiStreamRelay(call))
        headers = relayed_headers(response)
        content = response.content
        return UpstreamReply(
            status=response.status_code,
            headers=headers,
            body=content,
            usage=reply_usage(call, content),
        )


@hookimpl
def register_providers() -> dict[str, type[Adapter]]:
    """The `gemini` wire format."""
    return {"gemini": GeminiAdapter}
