"""Embeddings between OpenAI `/v1/embeddings` and Gemini `embedContent` / `batchEmbedContents`.

OpenAI -> Gemini: each input string becomes one request of a `batchEmbedContents` call
(`dimensions` -> `outputDimensionality`); the vectors come back as floats or, when the client
asked for ``encoding_format: "base64"`` (the openai SDK's default), as base64 of little-endian
float32. Token-id inputs are refused (Gemini embeds text). Gemini -> OpenAI: the text parts of
each content are joined into one input string (`outputDimensionality` -> `dimensions`;
`taskType` and `title` dropped: OpenAI has no such hints). Gemini replies carry no usage; the
usage the client sees is the one the gateway bills (the channel adapter's, estimated when
the upstream reported none).
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from tokone.core.types import Call, Usage
from tokone.plugins.translate.base import JSON, USAGE_KEY, refuse

OPENAI_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
GEMINI_FIELDS = frozenset(
    {"model", "content", "requests", "outputDimensionality", "taskType", "title"}
)


def openai_to_gemini(body: JSON) -> JSON:
    """An OpenAI embeddings request as a Gemini `batchEmbedContents` request."""
    for key in body:
        if key not in OPENAI_FIELDS:
            raise refuse(key, "Gemini embeddings have no such parameter")
    value = body.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise refuse("input", "Gemini embeds text, not token ids")
    requests = []
    for text in texts:
        request: JSON = {"content": {"parts": [{"text": text}]}}
        if body.get("dimensions"):
            request["outputDimensionality"] = body["dimensions"]
        requests.append(request)
    return {"requests": requests}


def gemini_to_openai(body: JSON) -> JSON:
    """A Gemini `embedContent` or `batchEmbedContents` request as an OpenAI embeddings request."""
    items = body.get("requests") if "requests" in body else [body]
    texts: list[str] = []
    dimensions = None
    for i, item in enumerate(items or []):
        for key in item:
            if key not in GEMINI_FIELDS:
                raise refuse(f"requests[{i}].{key}", "OpenAI embeddings have no such parameter")
        parts = (item.get("content") or {}).get("parts") or []
        texts.append("".join(p.get("text", "") for p in parts))
        dimensions = item.get("outputDimensionality") or dimensions
    out: JSON = {"input": texts, "encoding_format": "float"}
    if dimensions:
        out["dimensions"] = dimensions
    return out


def encode(values: list[float]) -> str:
    """A vector as base64 of little-endian float32 (OpenAI's `encoding_format: base64`)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def billed(call: Call) -> Usage:
    """The usage the gateway bills for this call (left by the adapter)."""
    usage = call.extra.get(USAGE_KEY)
    return usage if isinstance(usage, Usage) else Usage()


def gemini_reply_to_openai(reply: JSON, call: Call) -> JSON:
    """A `batchEmbedContents` reply as an OpenAI embeddings list."""
    b64 = call.json().get("encoding_format") == "base64"
    data = []
    for i, embedding in enumerate(reply.get("embeddings") or []):
        values: list[float] = embedding.get("values") or []
        data.append(
            {"object": "embedding", "index": i, "embedding": encode(values) if b64 else values}
        )
    tokens = billed(call).input_tokens
    return {
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def openai_reply_to_gemini(reply: JSON, call: Call) -> JSON:
    """An OpenAI embeddings list as an `embedContent` or `batchEmbedContents` reply."""
    vectors: list[Any] = [item.get("embedding") or [] for item in reply.get("data") or []]
    if call.endpoint == "embedContent":
        return {"embedding": {"values": vectors[0] if vectors else []}}
    return {"embeddings": [{"values": v} for v in vectors]}
