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

Architecture: a WebSocket route of the inference ingress
(:class:`~tokone.core.http.inference.InferenceIngress`, bare ASGI like every inference
endpoint; Litestar is not involved). The server (uvicorn) does the handshake and the framing;
the ingress's :class:`~tokone.core.http.inference.Socket` is the ASGI events, and the
ingress answers a handshake refused by a `GatewayError` (in OpenAI shape, one
`content-type`, `x-request-id`) and a bug (logged; a 500 refusal or a 1011 close). The
per-turn work is the ingress's own too: the size limit and its answer
(:func:`~tokone.core.http.inference.too_large`, the same `[server] max_body_bytes`) and the
family's error body.
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from tokone.core import pipeline
from tokone.core.errors import GatewayError, error_body
from tokone.core.gateway import Gateway
from tokone.core.http.inference import POLICY_VIOLATION, Socket, SocketRoute, too_large
from tokone.core.http.ingress import client_address, client_key, decode_body, new_request_id
from tokone.core.http.routes_openai import OpenAIParams
from tokone.core.model_names import check_model
from tokone.core.types import Call, Candidate, Family, Principal
from tokone.core.upstream import UpstreamReply, sse_data

FAMILY = Family.OPENAI
PATH = "/v1/responses"
ENVELOPE = ("type", "stream_id")
"""WebSocket-only fields of a `response.create` event, not part of `POST /v1/responses`."""


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


async def send_event(socket: Socket, event: dict[str, Any]) -> None:
    """Send one event as a JSON text frame."""
    await socket.send_text(msgspec.json.encode(event).decode())


async def relay_turn(
    gateway: Gateway,
    socket: Socket,
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


async def run_turn(gateway: Gateway, socket: Socket, key: str, frame: str | bytes) -> bool:
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
        call.client = client_address(socket.request)
        candidate, reply = await pipeline.start(gateway, call)
    except GatewayError as error:
        await send_event(socket, error_frame(error, stream_id))
        return True
    await relay_turn(gateway, socket, call, candidate, reply, stream_id)
    return True


async def serve_socket(gateway: Gateway, socket: Socket) -> None:
    """Authenticate the handshake (a `GatewayError` refuses it), then serve turns until the
    client closes."""
    key = client_key(socket.request)
    await pipeline.authenticate(gateway, key)
    assert key is not None
    await socket.accept()
    try:
        while (frame := await socket.receive()) is not None:
            if not await run_turn(gateway, socket, key, frame):
                await socket.close(POLICY_VIOLATION, "API key no longer valid")
                return
    except OSError:  # the client went away mid-turn (uvicorn's ClientDisconnected)
        gateway.log.info("responses_ws_client_gone")
    except Exception:  # a bug, not bad input: say so; the ingress logs it and closes (1011)
        with contextlib.suppress(OSError):
            await send_event(socket, error_frame(GatewayError("internal", "Internal error.")))
        raise


def responses_ws_routes(gateway: Gateway) -> dict[str, SocketRoute]:
    """The inference ingress's WebSocket route of the Responses API, bound to `gateway`."""

    async def serve(socket: Socket) -> None:
        await serve_socket(gateway, socket)

    return {PATH: (FAMILY, serve)}
