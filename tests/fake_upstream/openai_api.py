"""The OpenAI family: chat completions, legacy completions, embeddings, Responses (HTTP, SSE
and WebSocket) and the model list.

Usage numbers (``I``, ``N``, ``C`` as in the package docstring)
    * chat/completions: ``prompt_tokens = I`` (includes cached, like the real API),
      ``prompt_tokens_details.cached_tokens = C``, ``completion_tokens = N``,
      ``completion_tokens_details.reasoning_tokens = 0``, ``total_tokens = I + N``.
    * embeddings: ``prompt_tokens = total_tokens = I``.
    * responses: ``input_tokens = I``, ``input_tokens_details.cached_tokens = C``,
      ``output_tokens = N``, ``output_tokens_details.reasoning_tokens = 0``,
      ``total_tokens = I + N``.  ``/v1/responses/input_tokens`` answers ``I``.

Other echoes
    * Chat and responses echo ``service_tier`` (request value, else ``"default"``;
      ``"auto"`` is answered as ``"default"``, the tier the real API reports serving it in);
      legacy completions do not carry it (the real type has no such field).
    * Embeddings: one embedding per input item (a string, a token array, or list
      thereof); 8 floats by default (``dimensions`` honoured), item ``i`` has values
      ``i + (j + 1) / 16`` for ``j`` in ``range(dims)`` (exact in float32).
      ``encoding_format == "base64"`` returns base64 of the little-endian float32 array, as
      the real API does (the openai SDK asks for it by default).
    * Only one choice is ever returned (``n`` is ignored).

Routes
    ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``
    (SSE with ``event:`` lines when ``stream``), ``/v1/responses/input_tokens``, WebSocket
    ``GET /v1/responses`` (JSON ``response.create`` frames in, the same event sequence as the
    SSE stream out, many turns per connection; a ``stream_id`` sent by the client is echoed
    on every event), ``GET /v1/models``, ``GET /v1/models/{id}``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from typing import Any

from aiohttp import WSMsgType, web

from .server import UpstreamServer
from .tools import argument_pieces, openai_calls
from .wire import (
    CONTENT,
    DECODE_ERRORS,
    DEFAULT_DIMS,
    FINGERPRINT,
    OPENAI,
    POST,
    PRE,
    SSE_HEADERS,
    UNKNOWN_MODEL,
    Event,
    Turn,
    Usage,
    count_input_tokens,
    count_usage,
    dumps,
    error_body,
    error_response,
    json_response,
    loads,
    new_id,
    reply_pieces,
    reply_text,
    served_tier,
    set_usage,
    sse_frame,
    vector,
    vector_b64,
)


class OpenAIRoutes(UpstreamServer):
    """Handlers of the OpenAI routes."""

    def _openai_usage(self, u: Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    async def _h_chat(self, request: web.Request) -> web.StreamResponse:
        turn = await self._turn(request, OPENAI, lambda body: body.get("messages"))
        if not isinstance(turn, Turn):
            return turn
        body, model, usage, pieces, mode = turn.body, turn.model, turn.usage, turn.pieces, turn.mode
        tier = served_tier(body)
        cid = new_id("chatcmpl-")
        created = int(time.time())
        calls = openai_calls(body, model)
        if body.get("stream"):
            events = self._chat_events(body, model, tier, cid, created, usage, pieces, mode)
            return await self._emit(request, events, sse_frame, SSE_HEADERS)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls else "".join(pieces),
            "refusal": None,
            "annotations": [],
        }
        if calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                for i, (n, a) in enumerate(calls)
            ]
        out = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if calls else "stop",
                }
            ],
            "usage": self._openai_usage(usage),
            "service_tier": tier,
            "system_fingerprint": FINGERPRINT,
        }
        set_usage(out, "usage", out["usage"], mode)
        return json_response(out, headers={"x-request-id": new_id("req_")})

    def _chat_events(
        self,
        body: dict[str, Any],
        model: str,
        tier: str,
        cid: str,
        created: int,
        usage: Usage,
        pieces: tuple[str, ...],
        mode: str | None = None,
    ) -> Iterator[Event]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            d: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": tier,
                "system_fingerprint": FINGERPRINT,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                d["usage"] = None
            return d

        yield PRE, None, chunk({"role": "assistant", "content": "", "refusal": None})
        calls = openai_calls(body, model)
        for i, (name, arguments) in enumerate(calls):  # tool calls instead of text (tools.py)
            head = {"index": i, "id": f"call_{i}", "type": "function"}
            yield (
                PRE,
                None,
                chunk({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]}),
            )
            for piece in argument_pieces(arguments):
                call = {"index": i, "function": {"arguments": piece}}
                yield CONTENT, None, chunk({"tool_calls": [call]})
        for piece in () if calls else pieces:
            yield CONTENT, None, chunk({"content": piece})
        yield POST, None, chunk({}, "tool_calls" if calls else "stop")
        if include_usage and mode != "omit":
            final = chunk({})
            final["choices"] = []
            set_usage(final, "usage", self._openai_usage(usage), mode)
            yield POST, None, final
        yield POST, None, b"[DONE]"

    async def _h_completions(self, request: web.Request) -> web.StreamResponse:
        turn = await self._turn(request, OPENAI, lambda body: body.get("prompt"))
        if not isinstance(turn, Turn):
            return turn
        body, model, usage, pieces, mode = turn.body, turn.model, turn.usage, turn.pieces, turn.mode
        cid = new_id("cmpl-")
        created = int(time.time())

        def obj(text: str, finish: str | None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            }

        if not body.get("stream"):
            out = obj("".join(pieces), "stop")
            set_usage(out, "usage", self._openai_usage(usage), mode)
            return json_response(out, headers={"x-request-id": new_id("req_")})

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[Event]:
            for piece in pieces:
                c = obj(piece, None)
                if include_usage:
                    c["usage"] = None
                yield CONTENT, None, c
            last = obj("", "stop")
            if include_usage:
                last["usage"] = None
            yield POST, None, last
            if include_usage and mode != "omit":
                u = obj("", None)
                u["choices"] = []
                set_usage(u, "usage", self._openai_usage(usage), mode)
                yield POST, None, u
            yield POST, None, b"[DONE]"

        return await self._emit(request, events(), sse_frame, SSE_HEADERS)

    async def _h_embeddings(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        model = str(body.get("model") or UNKNOWN_MODEL)
        inp = body.get("input")
        if (
            isinstance(inp, list)
            and inp
            and not (isinstance(inp[0], int) and not isinstance(inp[0], bool))
        ):
            items: list[Any] = inp
        else:
            items = [inp]
        dims = body.get("dimensions") or DEFAULT_DIMS
        b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": vector_b64(i, dims) if b64 else list(vector(i, dims)),
            }
            for i in range(len(items))
        ]
        n = count_input_tokens(inp)
        out = {"object": "list", "data": data, "model": model}
        usage = {"prompt_tokens": n, "total_tokens": n}
        set_usage(out, "usage", usage, self._pop(self._usage_modes))
        return json_response(out, headers={"x-request-id": new_id("req_")})

    def _response_obj(
        self,
        body: dict[str, Any],
        model: str,
        rid: str,
        mid: str,
        created: int,
        usage: Usage | None,
        text: str | None,
    ) -> dict[str, Any]:
        """Build a Response object; ``text is None`` means the in-progress snapshot."""
        done = text is not None
        output = (
            [
                {
                    "id": mid,
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                    ],
                }
            ]
            if done
            else []
        )
        return {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": "completed" if done else "in_progress",
            "background": False,
            "completed_at": int(time.time()) if done else None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": served_tier(body),
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": None
            if usage is None
            else {
                "input_tokens": usage.input,
                "input_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": 0},
                "output_tokens": usage.output,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.input + usage.output,
            },
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _responses_usage(self, body: dict[str, Any], model: str) -> Usage:
        counted = {k: body[k] for k in ("input", "instructions") if k in body}
        return count_usage(model, counted, self.chunks)

    def _responses_events(self, body: dict[str, Any], mode: str | None = None) -> Iterator[Event]:
        model = str(body.get("model") or UNKNOWN_MODEL)
        usage = self._responses_usage(body, model)
        pieces = reply_pieces(model, self.chunks)
        text = "".join(pieces)
        rid, mid = new_id("resp_"), new_id("msg_")
        created = int(time.time())
        seq = itertools.count()
        snapshot = self._response_obj(body, model, rid, mid, created, None, None)

        def ev(kind: int, etype: str, **fields: Any) -> Event:
            return kind, etype, {"type": etype, "sequence_number": next(seq), **fields}

        yield ev(PRE, "response.created", response=snapshot)
        yield ev(PRE, "response.in_progress", response=snapshot)
        item = {
            "id": mid,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        yield ev(PRE, "response.output_item.added", output_index=0, item=item)
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield ev(
            PRE,
            "response.content_part.added",
            item_id=mid,
            output_index=0,
            content_index=0,
            part=empty_part,
        )
        for piece in pieces:
            yield ev(
                CONTENT,
                "response.output_text.delta",
                item_id=mid,
                output_index=0,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        yield ev(
            POST,
            "response.output_text.done",
            item_id=mid,
            output_index=0,
            content_index=0,
            text=text,
            logprobs=[],
        )
        full_part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        yield ev(
            POST,
            "response.content_part.done",
            item_id=mid,
            output_index=0,
            content_index=0,
            part=full_part,
        )
        done_item = {**item, "status": "completed", "content": [full_part]}
        yield ev(POST, "response.output_item.done", output_index=0, item=done_item)
        final = self._response_obj(body, model, rid, mid, created, usage, text)
        set_usage(final, "usage", final["usage"], mode)
        yield ev(POST, "response.completed", response=final)

    async def _h_responses(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        mode = self._pop(self._usage_modes)
        if body.get("stream"):
            events = self._responses_events(body, mode)
            return await self._emit(request, events, sse_frame, SSE_HEADERS)
        model = str(body.get("model") or UNKNOWN_MODEL)
        usage = self._responses_usage(body, model)
        text = reply_text(model, self.chunks)
        obj = self._response_obj(
            body, model, new_id("resp_"), new_id("msg_"), int(time.time()), usage, text
        )
        set_usage(obj, "usage", obj["usage"], mode)
        return json_response(obj, headers={"x-request-id": new_id("req_")})

    async def _h_responses_input_tokens(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        counted = {k: body[k] for k in ("input", "instructions") if k in body}
        return json_response(
            {"object": "response.input_tokens", "input_tokens": count_input_tokens(counted)}
        )

    async def _h_responses_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, autoping=True)
        if not ws.can_prepare(request).ok:
            await self._prelude(request, OPENAI, need_body=False)
            return error_response(OPENAI, 405, "GET /v1/responses requires a WebSocket upgrade")
        _, early = await self._prelude(request, OPENAI, need_body=False)
        if early is not None:
            return early
        await ws.prepare(request)
        self._websockets.add(ws)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    event = loads(msg.data)
                except DECODE_ERRORS:
                    event = None
                if not isinstance(event, dict) or event.get("type") != "response.create":
                    etype = event.get("type") if isinstance(event, dict) else None
                    await ws.send_str(
                        dumps(_ws_error(400, f"Unsupported client event type {etype!r}")).decode()
                    )
                    continue
                self._record(request, event, method="WS")
                stream_id = event.get("stream_id")
                status = self._pop(self._ws_fail)
                if status is not None:
                    err = _ws_error(status, f"Injected failure {status}")
                    if stream_id is not None:
                        err["stream_id"] = stream_id
                    await ws.send_str(dumps(err).decode())
                    continue
                params = {k: v for k, v in event.items() if k not in ("type", "stream_id")}
                if not await self._emit_ws(request, ws, self._responses_events(params), stream_id):
                    break
        finally:
            self._websockets.discard(ws)
        return ws

    async def _emit_ws(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        events: Iterable[Event],
        stream_id: Any,
    ) -> bool:
        plan = self._stream_plan()
        idx = 0
        post_gated = False
        for kind, _name, payload in events:
            if stream_id is not None:
                payload["stream_id"] = stream_id
            if plan is not None and (kind == CONTENT or (kind == POST and not post_gated)):
                post_gated = post_gated or kind == POST
                if not await self._gate(idx, plan, kind == CONTENT):
                    self._abort(request)
                    return False
                idx += kind == CONTENT
            await ws.send_str(dumps(payload).decode())
        return True

    def _openai_model(self, name: str) -> dict[str, Any]:
        """One entry of the OpenAI model list."""
        return {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "fake-upstream",
        }


def _ws_error(status: int, message: str) -> dict[str, Any]:
    """A Responses WebSocket ``error`` event."""
    body = error_body(OPENAI, status, message)["error"]
    return {"type": "error", "status": status, "error": body}
