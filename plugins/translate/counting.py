"""Token counting for translated models: Anthropic `count_tokens`, Gemini `countTokens`, OpenAI
`responses/input_tokens`.

Answered by the channel's own counter when its family has one (Anthropic's
`/v1/messages/count_tokens`, Gemini's `countTokens`), with the request translated like a
generation request; a chat-only OpenAI-compatible channel has none, so the gateway estimates
(four characters of the translated request per token) and says so in the
``x-tokone-estimated: true`` response header. Counting is free, as it is natively.
"""

from __future__ import annotations

from typing import ClassVar

import msgspec
from tokone.core.tokens import estimate_chars
from tokone.core.types import Call, Usage
from tokone.core.upstream import UpstreamReply
from tokone.plugins.translate.base import JSON, TranslatingAdapter

COUNT_DROPPED = (
    "max_tokens",
    "stop_sequences",
    "temperature",
    "top_p",
    "metadata",
    "stream",
    "output_config",
)
"""Fields of a Messages request that Anthropic's count_tokens does not take."""
ESTIMATED_HEADER = "x-tokone-estimated"


def messages_count_request(body: JSON) -> JSON:
    """A Messages request trimmed to what `count_tokens` accepts."""
    return {k: v for k, v in body.items() if k not in COUNT_DROPPED}


def gemini_count_request(body: JSON) -> JSON:
    """A generateContent request as a `countTokens` request (the whole request nested)."""
    return {"generateContentRequest": body}


def input_tokens(family_reply: JSON) -> int:
    """The count in an Anthropic (`input_tokens`) or Gemini (`totalTokens`) count reply."""
    value = family_reply.get("input_tokens", family_reply.get("totalTokens", 0))
    return value if type(value) is int and value >= 0 else 0


class EstimatingCounter(TranslatingAdapter):
    """Answers a count for a channel without a counter: an estimate, no upstream call."""

    name: ClassVar[str] = "translate-estimate"

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """The estimated count of the translated request, in the client's reply shape."""
        body = self.translation.request(call.json())
        tokens = estimate_chars(len(msgspec.json.encode(body)))
        reply = self.translation.reply({"input_tokens": tokens}, call)
        headers = {"content-type": "application/json", ESTIMATED_HEADER: "true"}
        return UpstreamReply(
            status=200, headers=headers, body=msgspec.json.encode(reply), usage=Usage()
        )
