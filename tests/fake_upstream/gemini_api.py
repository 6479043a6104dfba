"""The Gemini family: generateContent, streamGenerateContent, countTokens, embeddings and
the model list.

Usage numbers (``I``, ``N``, ``C`` as in the package docstring)
    ``promptTokenCount = I`` (includes cached), ``cachedContentTokenCount = C`` (only
    present when C > 0), ``candidatesTokenCount = N``, ``thoughtsTokenCount = 3`` only if the
    model name contains ``"thinking"``, ``totalTokenCount = I + N + thoughts``.  Streams
    carry running usage on every chunk: chunk ``i`` (1-based) has
    ``candidatesTokenCount = i``, so the last chunk has the final numbers.  ``countTokens``
    answers ``{"totalTokens": I}``.  Embedding calls carry no usage; their vectors are the
    OpenAI family's (``outputDimensionality`` honoured).  Only one candidate is returned.

Routes
    ``POST /v1beta/models/{model}:{action}`` and ``/v1/models/{model}:{action}`` for
    ``generateContent``, ``streamGenerateContent`` (``?alt=sse`` -> SSE, otherwise a JSON
    array), ``countTokens``, ``embedContent``, ``batchEmbedContents``; ``GET /v1beta/models``
    and ``GET /v1beta/models/{model}`` (``/v1/models`` too when the request carries
    ``x-goog-api-key`` or ``?key=``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from aiohttp import web

from .server import UpstreamServer
from .tools import gemini_calls
from .wire import (
    CONTENT,
    DEFAULT_DIMS,
    GEMINI,
    POST,
    PRE,
    Event,
    Usage,
    count_input_tokens,
    count_usage,
    dumps,
    error_response,
    json_response,
    new_id,
    raw_frame,
    reply_pieces,
    reply_text,
    set_usage,
    sse_frame,
    vector,
)


class GeminiRoutes(UpstreamServer):
    """Handlers of the Gemini routes."""

    def _gemini_model(self, name: str) -> dict[str, Any]:
        embed = "embedding" in name
        methods = (
            ["embedContent", "batchEmbedContents"]
            if embed
            else ["generateContent", "streamGenerateContent", "countTokens"]
        )
        return {
            "name": f"models/{name}",
            "baseModelId": name,
            "version": "001",
            "displayName": name.replace("-", " ").title(),
            "description": f"Fake {name}",
            "inputTokenLimit": 2048 if embed else 1048576,
            "outputTokenLimit": 1 if embed else 65536,
            "supportedGenerationMethods": methods,
        }

    async def _h_gemini_models_list(self, request: web.Request) -> web.StreamResponse:
        _, early = await self._prelude(request, GEMINI, need_body=False)
        if early is not None:
            return early
        return json_response({"models": [self._gemini_model(m) for m in self.gemini_models]})

    async def _h_gemini_model_get(self, request: web.Request) -> web.StreamResponse:
        _, early = await self._prelude(request, GEMINI, need_body=False)
        if early is not None:
            return early
        name = request.match_info["name"]
        if name not in self.gemini_models:
            return error_response(GEMINI, 404, f"models/{name} is not found for API version")
        return json_response(self._gemini_model(name))

    @staticmethod
    def _gemini_usage(u: Usage, candidates: int) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "promptTokenCount": u.input,
            "candidatesTokenCount": candidates,
            "totalTokenCount": u.input + candidates + u.thoughts,
        }
        if u.cached:
            meta["cachedContentTokenCount"] = u.cached
        if u.thoughts:
            meta["thoughtsTokenCount"] = u.thoughts
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": u.input}]
        return meta

    async def _h_gemini_action(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, GEMINI, need_body=True)
        if early is not None:
            return early
        model, _, action = request.match_info["name"].partition(":")
        if action == "generateContent":
            return self._gemini_generate(body, model, self._pop(self._usage_modes))
        if action == "streamGenerateContent":
            return await self._gemini_stream(request, body, model, self._pop(self._usage_modes))
        if action == "countTokens":
            return json_response({"totalTokens": count_input_tokens(body)})
        if action == "embedContent":
            dims = body.get("outputDimensionality") or DEFAULT_DIMS
            return json_response({"embedding": {"values": list(vector(0, dims))}})
        if action == "batchEmbedContents":
            reqs = body.get("requests") or []
            out = []
            for i, req in enumerate(reqs):
                dims = (
                    req.get("outputDimensionality") if isinstance(req, dict) else None
                ) or DEFAULT_DIMS
                out.append({"values": list(vector(i, dims))})
            return json_response({"embeddings": out})
        return error_response(GEMINI, 404, f"Unknown action {action!r} for models/{model}")

    def _gemini_generate(
        self, body: dict[str, Any], model: str, mode: str | None = None
    ) -> web.Response:
        usage = count_usage(model, body, self.chunks)
        text = reply_text(model, self.chunks)
        calls = gemini_calls(body, model)  # tool calls instead of text (tools.py)
        parts = [call_part(c) for c in calls] or [{"text": text}]
        out = {
            "candidates": [
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": self._gemini_usage(usage, usage.output),
            "modelVersion": model,
            "responseId": new_id("gem"),
        }
        set_usage(out, "usageMetadata", out["usageMetadata"], mode)
        return json_response(out)

    async def _gemini_stream(
        self, request: web.Request, body: dict[str, Any], model: str, mode: str | None = None
    ) -> web.StreamResponse:
        usage = count_usage(model, body, self.chunks)
        calls = gemini_calls(body, model)  # tool calls instead of text (tools.py), one a chunk
        parts = [call_part(c) for c in calls] or [
            {"text": piece} for piece in reply_pieces(model, self.chunks)
        ]
        rid = new_id("gem")
        last = len(parts) - 1

        def chunks() -> Iterator[Event]:
            for i, part in enumerate(parts):
                cand: dict[str, Any] = {
                    "content": {"parts": [part], "role": "model"},
                    "index": 0,
                }
                if i == last:
                    cand["finishReason"] = "STOP"
                meta = self._gemini_usage(usage, usage.output if i == last else i + 1)
                if mode == "late" and i != last:
                    meta = {"promptTokenCount": usage.input, "totalTokenCount": usage.input}
                out = {"candidates": [cand], "modelVersion": model, "responseId": rid}
                yield CONTENT, None, set_usage(out, "usageMetadata", meta, mode)

        if request.query.get("alt") == "sse":
            return await self._emit(
                request, chunks(), sse_frame, {"Content-Type": "text/event-stream"}
            )

        def array() -> Iterator[Event]:  # the non-SSE form is one JSON array
            yield PRE, None, b"["
            for i, (kind, name, payload) in enumerate(chunks()):
                yield kind, name, (b",\r\n" if i else b"") + dumps(payload)
            yield POST, None, b"]"

        return await self._emit(
            request, array(), raw_frame, {"Content-Type": "application/json; charset=UTF-8"}
        )


def call_part(call: tuple[str, str]) -> dict[str, Any]:
    """A functionCall part for one planned call (name, arguments JSON)."""
    return {"functionCall": {"name": call[0], "args": json.loads(call[1])}}
