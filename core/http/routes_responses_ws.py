"""The Responses API over WebSocket: `GET /v1/responses` upgraded, many turns per connection.

What the openai SDK's ``client.responses.connect()`` does (openai-python 3.x,
``resources/responses/responses.py`` and ``_websocket_connection.py``): it opens
``ws(s)://<base_url>/responses`` with the client's usual auth header
(``Authorization: Bearer <key>``), sends one JSON text frame per client event —
``{"type": "response.create", ...the POST /v1/responses fields..., "stream_id"?: ...}`` — and
reads JSON frames, each one Responses stream event (``response.created``, ...
``response.completed``) or ``{"type": "error", "status", "error": {...}}``.

Here:

* **Handshake.** The key is read from the handshake's headers by the same rules as HTTP (a key
  in the query string is refused). A refused handshake is answered with a plain HTTP error in
  OpenAI shape (ASGI's `websocket.http.response` extension), which the SDK's `websockets`
  client raises as ``InvalidStatus`` carrying the status and the body.
* **Turns.** Every ``response.create`` frame is one call through the same pipeline stages as
  ``POST /v1/responses`` with ``stream: true`` (:func:`tokone.core.pipeline.start` and
  :func:`tokone.core.pipeline.relay`): its own request id, route, admission (hold, limits),
  upstream with failover, relay, price and meter — so each turn is recorded and charged on its
  own. Turns run one after another in arrival order; the key is re-checked for each, so a
  disabled or revoked key stops the connection at its next turn.
* **Upstream.** A turn goes upstream as an ordinary streamed ``POST /responses`` (SSE) — the
  envelope fields ``type`` and ``stream_id`` removed, ``stream: true`` set — and each SSE
  event's data is sent back as one text frame (with the turn's ``stream_id``, when the client
  gave one). Every adapter already speaks that (the mock included), it fails over like any
  other call, and no long-lived upstream socket is tied to a client's connection.
* **Errors.** A bad frame, a refused turn (unknown model, balance, limits, upstream 4xx/5xx)
  and a stream cut mid-turn each answer with an ``error`` frame and the connection stays open
  for the next turn; only a key that is no longer valid closes it (code 1008, after the
  frame), and a bug (logged, answered with an ``internal`` error frame) closes it with 1011.

Architecture: this is the one inference transport that stays a Litestar route. Litestar's
cost here is per connection (the handshake), not per turn, and a raw-ASGI WebSocket would
re-implement the handshake, frame receiving and close handling that Litestar already does;
the per-turn work is the inference ingress's own: the size limit and its answer
(:func:`~tokone.core.http.inference.too_large`, the same `[server] max_body_bytes`), the
internal-error answer (:func:`~tokone.core.http.inference.internal_error`), the family's
error body, and a refused handshake written like any reply
(:func:`~tokone.core.http.inference.reply_headers`, one `content-type`).
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.handlers import BaseRouteHandler
from litestar.types import WebSocketResponseBodyEvent, WebSocketResponseStartEvent
from tokone.core import pipeline
from tokone.core.errors import GatewayError, error_body
from tokone.core.gateway import Gateway
from tokone.core.http.inference import internal_error, reply_headers, too_large
from tokone.core.http.ingress import (
    client_address,
    client_key,
    decode_body,
    error_reply,
    new_request_id,
)
from tokone.core.http.routes_openai import OpenAIParams
from tokone.core.model_names import check_model
from tokone.core.types import Call, Candidate, Family, Principal
from tokone.core.upstream import UpstreamReply, sse_data

FAMILY = Family.OPENAI
ENVELOPE = ("type", "stream_id")
"""WebSocket-only fields of a `response.create` event, not part of `POST /v1/responses`."""
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
DENIAL = "websocket.http.response"


def error_frame(error: GatewayError, stream_id: Any = None) -> dict[str, Any]:
    """`error` as the SDK's `ResponseWsError` event: type, HTTP status and OpenAI error body."""
    frame: dict[str, Any] = {
        "type": "error",
        "status": error.status,
        "error": error_body(FAMILY, error)["error"],
    }
    if stream_id is not None:
        frame["stream_id"] = stream_id
    return frame


def parse_event(frame: str | bytes, limit: int) -> dict[str, Any]:
    """Decode one client frame; only `response.create` events are served."""
    if len(frame) > limit:
        raise too_large(limit, "event")
    try:
        event = msgspec.json.decode(frame)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise GatewayError("invalid_request", f"The event is not valid JSON: {exc}") from None
    if not isinstance(event, dict):
        raise GatewayError("invalid_request", "The event must be a JSON object.")
    kind = event.get("type")
    if kind != "response.create":
        raise GatewayError(
            "invalid_request",
            f"Unsupported client event type {kind!r}: this endpoint accepts 'response.create'.",
            param="type",
        )
    return event


def turn_call(event: dict[str, Any], principal: Principal) -> Call:
    """The `POST /v1/responses` call (streamed) a `response.create` event stands for."""
    body = {k: v for k, v in event.items() if k not in ENVELOPE}
    body["stream"] = True
    raw = msgspec.json.encode(body)
    params = decode_body(raw, OpenAIParams)
    if not params.model:
        raise GatewayError("invalid_request", "The 'model' field is required.", param="model")
    return Call(
        request_id=new_request_id(),
        family=FAMILY,
        endpoint="responses",
        model=check_model(params.model, slashes=True),
        raw=raw,
        stream=True,
        principal=principal,
        service_tier=params.service_tier,
        max_output_tokens=params.max_output_tokens,
    )


def tagged(data: bytes, stream_id: Any) -> str:
    """An event's JSON as a text frame, carrying the turn's `stream_id` when there is one."""
    if stream_id is None:
        return data.decode()
    event = msgspec.json.decode(data)
    if isinstance(event, dict):
        event["stream_id"] = stream_id
    return msgspec.json.encode(event).decode()


async def send_event(socket: WebSocket[Any, Any, Any], event: dict[str, Any]) -> None:
    """Send one event as a JSON text frame."""
    await socket.send_text(msgspec.json.encode(event).decode())


async def refuse(socket: WebSocket[Any, Any, Any], error: GatewayError) -> None:
    """Refuse the handshake with an HTTP error in OpenAI shape (a close where unsupported)."""
    await socket.receive()  # the `websocket.connect` event
    if DENIAL not in (socket.scope.get("extensions") or {}):
        reason = error.message.encode()[:120].decode(errors="ignore")
        await socket.close(code=POLICY_VIOLATION, reason=reason)
        return
    reply = error_reply(FAMILY, error)
    headers = reply_headers(reply)
    headers.append((b"content-length", str(len(reply.body)).encode()))
    # f-strings type as `str`, not the TypedDicts' Literal tags; more_body is optional in ASGI.
    start = {"type": f"{DENIAL}.start", "status": reply.status, "headers": headers}
    await socket.send(cast(WebSocketResponseStartEvent, start))
    body = {"type": f"{DENIAL}.body", "body": reply.body}
    await socket.send(cast(WebSocketResponseBodyEvent, body))


async def relay_turn(
    gateway: Gateway,
    socket: WebSocket[Any, Any, Any],
    call: Call,
    candidate: Candidate,
    reply: UpstreamReply,
    stream_id: Any,
) -> None:
    """Send the turn's events as frames; the pipeline meters it however it ends."""
    if reply.stream is None:  # an adapter that answered with the whole Response object
        outcome = pipeline.finish(gateway, call, candidate, reply.status, reply.usage)
        pipeline.meter(gateway, call, outcome)
        response = msgspec.json.decode(reply.body)
        await send_event(socket, {"type": "response.completed", "response": response})
        return

    def error_event(failure: GatewayError) -> bytes:
        return b"data: " + msgspec.json.encode(error_frame(failure)) + b"\n\n"

    events = pipeline.relay(gateway, call, candidate, reply, error_event)
    async with contextlib.aclosing(events):
        async for block in events:
            for event in block.split(b"\n\n"):
                data = sse_data(event) if event else None
                if data:
                    await socket.send_text(tagged(data, stream_id))


async def run_turn(
    gateway: Gateway, socket: WebSocket[Any, Any, Any], key: str, frame: str | bytes
) -> bool:
    """Serve one client frame; return False when the connection must close (key invalid)."""
    try:
        principal = await pipeline.authenticate(gateway, key)
    except GatewayError as error:
        await send_event(socket, error_frame(error))
        return False
    stream_id = None
    try:
        event = parse_event(frame, gateway.config.server.max_body_bytes)
        stream_id = event.get("stream_id")
        call = turn_call(event, principal)
        call.client = client_address(socket)
        candidate, reply = await pipeline.start(gateway, call)
    except GatewayError as error:
        await send_event(socket, error_frame(error, stream_id))
        return True
    await relay_turn(gateway, socket, call, candidate, reply, stream_id)
    return True


async def serve_socket(gateway: Gateway, socket: WebSocket[Any, Any, Any]) -> None:
    """Authenticate the handshake, then serve turns until the client closes."""
    try:
        key = client_key(socket)
        await pipeline.authenticate(gateway, key)
    except GatewayError as error:
        await refuse(socket, error)
        return
    assert key is not None
    await socket.accept()
    try:
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            # After the disconnect check, only websocket.receive events arrive here.
            frame = cast("str | bytes", message.get("text") or message.get("bytes") or "")
            if not await run_turn(gateway, socket, key, frame):
                await socket.close(code=POLICY_VIOLATION, reason="API key no longer valid")
                return
    except (WebSocketDisconnect, OSError):  # the client went away mid-turn
        gateway.log.info("responses_ws_client_gone")
    except Exception:  # a bug, not bad input: say so, then close
        failure = internal_error(socket.scope["path"], new_request_id())
        with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
            await send_event(socket, error_frame(failure))
            await socket.close(code=INTERNAL_ERROR, reason="Internal error.")


def responses_ws_handlers(gateway: Gateway) -> list[BaseRouteHandler]:
    """The WebSocket route of the Responses API, bound to `gateway`."""

    @websocket("/v1/responses", name="responses.websocket")
    async def responses_socket(socket: WebSocket[Any, Any, Any]) -> None:
        await serve_socket(gateway, socket)

    return [responses_socket]
