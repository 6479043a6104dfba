"""The one inference ingress: every inference endpoint of every family, as bare ASGI.

Architecture: :class:`InferenceIngress` sits in front of the Litestar app. A POST on one of
the exact inference paths (OpenAI's `/v1/chat/completions`, ..., Anthropic's `/v1/messages`,
...) or under a Gemini prefix (`/v1beta/models/`, `/v1/models/`, for
`models/{model}:{action}`), and the Responses API's WebSocket (`GET /v1/responses`
upgraded), are served here; Litestar has no inference route at all: it serves the rest —
model listings, the admin API, the dashboard, the OpenAPI schema — unchanged. These routes
carry nearly all of the traffic and need none of Litestar's request machinery (parameter
parsing, dependency injection, response conversion), which measured at 2-3x the cost of a
bare ASGI handler here (a trivial POST: 16-18k req/s through Litestar, 35-50k bare).

This module owns, once for all families:

* **body reading** and the size limit (`[server] max_body_bytes`, 413 in the family's shape;
  :func:`too_large` is the same answer for a WebSocket event),
* **the request id** (every answer carries `x-request-id`),
* **the error answer**: a :class:`GatewayError` raised by a family handler or the pipeline
  becomes the family's error shape; anything else is logged and answered as a 500 in that
  shape (:func:`internal_error`),
* **response writing** of a :class:`~tokone.core.types.Reply` straight to ASGI, with exactly
  one `content-type` (:func:`reply_headers`), and
* **client disconnect**: a streamed reply stops as soon as the client leaves, so the
  pipeline meters what was delivered. A whole reply is written in one go; its call is
  metered after it (`Reply.after_send`).

The family handlers (`routes_openai.serve`, `routes_anthropic.serve`, `routes_gemini.serve`)
see an :class:`Incoming` with the few parts of a request they read, and return a `Reply`.

A WebSocket needs no more than ASGI gives: the server (uvicorn) does the handshake and the
framing, so a :class:`Socket` is the few ASGI events (`websocket.connect` ->
`websocket.accept`, or the handshake refused with an HTTP answer through the
`websocket.http.response` extension; `websocket.receive` / `websocket.send`;
`websocket.close` / `websocket.disconnect`). Its handler (`routes_responses_ws.serve_socket`)
reads the handshake as an :class:`Incoming` and serves frames; a `GatewayError` it raises
before accepting refuses the handshake in the family's shape (with `x-request-id`), and a bug
is logged and answered as a 500 refusal, or a 1011 close once the socket is open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import cast
from urllib.parse import parse_qsl

import structlog
from litestar.datastructures import Headers, MultiDict
from litestar.types import (
    ASGIApp,
    HTTPReceiveMessage,
    HTTPScope,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
    WebSocketReceiveEvent,
    WebSocketReceiveMessage,
)
from tokone.core.errors import GatewayError
from tokone.core.http.ingress import error_reply, new_request_id
from tokone.core.types import Family, Reply

Handler = Callable[["Incoming"], Awaitable[Reply]]
Route = tuple[Family, Handler]
"""An inference route: the family (for error answers) and the handler serving it."""
SocketHandler = Callable[["Socket"], Awaitable[None]]
SocketRoute = tuple[Family, SocketHandler]
"""A WebSocket route: the family (for a refused handshake) and the handler serving it."""
DENIAL = "websocket.http.response"
"""The ASGI extension that lets an app answer a WebSocket handshake with an HTTP response."""
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011


class Incoming:
    """The parts of an HTTP request (or a WebSocket handshake) the ingress code reads,
    straight from the ASGI scope."""

    __slots__ = ("_headers", "body", "request_id", "scope")

    def __init__(self, scope: Scope, body: bytes, request_id: str) -> None:
        self.scope = scope
        self.body = body
        """The whole request body."""
        self.request_id = request_id
        """The id of this call, also in the answer's `x-request-id` (errors included)."""
        self._headers: Headers | None = None

    @property
    def path(self) -> str:
        """The request path (percent-decoded)."""
        return cast(str, self.scope["path"])

    @property
    def headers(self) -> Headers:
        """The request headers (case-insensitive)."""
        if self._headers is None:
            self._headers = Headers.from_scope(self.scope)
        return self._headers

    @property
    def query_params(self) -> MultiDict[str]:
        """The query string's parameters."""
        query = self.scope.get("query_string", b"").decode("latin-1")
        return MultiDict(parse_qsl(query, keep_blank_values=True))


def too_large(limit: int, what: str = "request body") -> GatewayError:
    """The refusal of a request body (or WebSocket event) longer than `limit` bytes."""
    return GatewayError("too_large", f"The {what} is larger than {limit} bytes.")


def internal_error(path: str, request_id: str) -> GatewayError:
    """Log the exception being handled (a bug, not bad input) and return the 500 to answer."""
    structlog.get_logger("tokone").exception("request_failed", path=path, request_id=request_id)
    return GatewayError("internal", "Internal error.")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """Read the request body, refusing one longer than `limit` bytes (413); None if the
    client went away before sending all of it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        # An http scope's receive() only yields http.request / http.disconnect.
        message = cast(HTTPReceiveMessage, await receive())
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_OWN_HEADERS = frozenset({"content-type", "content-length"})
"""Headers the writer sets itself, whatever `Reply.headers` says."""


def reply_headers(reply: Reply) -> list[tuple[bytes, bytes]]:
    """ASGI headers for `reply`: its one `content-type` (the media type), then its other
    headers, lower-cased; no `content-length` (the writer adds it to a whole body)."""
    headers = [(b"content-type", reply.media_type.encode("latin-1"))]
    for name, value in reply.headers.items():
        lower = name.lower()
        if lower not in _OWN_HEADERS:
            headers.append((lower.encode("latin-1"), value.encode("latin-1")))
    return headers


async def write_reply(reply: Reply, receive: Receive, send: Send) -> None:
    """Write `reply` to the ASGI `send`: a whole body, or its stream until it ends or the
    client disconnects (the stream is closed either way). Runs `reply.after_send` after a
    whole body, even when sending it failed."""
    headers = reply_headers(reply)
    if reply.stream is None:
        try:
            headers.append((b"content-length", str(len(reply.body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            await send({"type": "http.response.body", "body": reply.body, "more_body": False})
        finally:
            if reply.after_send is not None:
                reply.after_send()
        return
    stream = reply.stream
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    pump = asyncio.ensure_future(_pump(stream, send))
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watcher):
            task.cancel()
        await asyncio.gather(pump, watcher, return_exceptions=True)
        await stream.aclose()
    failure = None if pump.cancelled() else pump.exception()
    if failure is not None:
        raise failure


async def _pump(stream: AsyncGenerator[bytes, None], send: Send) -> None:
    async for chunk in stream:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message: ReceiveMessage = await receive()
        if message["type"] == "http.disconnect":
            return


class Socket:
    """One WebSocket connection as its ASGI events; `request` is its handshake."""

    __slots__ = ("_receive", "_send", "accepted", "request")

    def __init__(self, request: Incoming, receive: Receive, send: Send) -> None:
        self.request = request
        """The handshake (headers, query string, client; no body) and its request id."""
        self.accepted = False
        """Whether the handshake was accepted (frames may be sent)."""
        self._receive = receive
        self._send = send

    async def accept(self) -> None:
        """Accept the handshake; the answer carries the handshake's `x-request-id`."""
        headers = [(b"x-request-id", self.request.request_id.encode())]
        await self._send({"type": "websocket.accept", "subprotocol": None, "headers": headers})
        self.accepted = True

    async def connected(self) -> bool:
        """Wait for the client's `websocket.connect`; False if it disconnected instead."""
        message = cast(WebSocketReceiveMessage, await self._receive())
        return message["type"] == "websocket.connect"

    async def refuse(self, family: Family, error: GatewayError) -> None:
        """Refuse the handshake with `error` as an HTTP answer in `family`'s shape (with
        `x-request-id`), or, where the server lacks the `websocket.http.response` extension,
        with a 1008 close carrying its message."""
        if DENIAL not in (self.request.scope.get("extensions") or {}):
            await self.close(POLICY_VIOLATION, error.message)
            return
        reply = error_reply(family, error, self.request.request_id)
        headers = reply_headers(reply)
        headers.append((b"content-length", str(len(reply.body)).encode()))
        await self._send(
            {"type": "websocket.http.response.start", "status": reply.status, "headers": headers}
        )
        await self._send(
            {"type": "websocket.http.response.body", "body": reply.body, "more_body": False}
        )

    async def receive(self) -> str | bytes | None:
        """The next frame from the client (text or bytes), None once it has disconnected."""
        message = cast(WebSocketReceiveMessage, await self._receive())
        if message["type"] == "websocket.disconnect":
            return None
        # After `websocket.connect`, receive() yields websocket.receive/disconnect only.
        frame = cast(WebSocketReceiveEvent, message)
        return frame.get("text") or frame.get("bytes") or ""

    async def send_text(self, text: str) -> None:
        """Send one text frame (an `OSError` if the client has gone)."""
        await self._send({"type": "websocket.send", "bytes": None, "text": text})

    async def close(self, code: int, reason: str) -> None:
        """Close the connection with `code` and `reason` (at most 123 bytes in the frame)."""
        reason = reason.encode()[:120].decode(errors="ignore")
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


async def serve_socket(route: SocketRoute, scope: Scope, receive: Receive, send: Send) -> None:
    """Run a WebSocket route's handler on one connection: a `GatewayError` before the
    handshake is accepted refuses it in the family's shape; a bug is logged and refuses it
    (500) or, once open, closes it with 1011."""
    family, handler = route
    socket = Socket(Incoming(scope, b"", new_request_id()), receive, send)
    if not await socket.connected():
        return
    try:
        await handler(socket)
    except Exception as exc:
        if isinstance(exc, GatewayError) and not socket.accepted:
            await socket.refuse(family, exc)
            return
        failure = internal_error(scope["path"], socket.request.request_id)  # a bug: logged
        with contextlib.suppress(OSError, RuntimeError):  # the client may have gone
            if socket.accepted:
                await socket.close(INTERNAL_ERROR, failure.message)
            else:
                await socket.refuse(family, failure)


def bind_routes(
    family: Family,
    paths: dict[str, str],
    serve: Callable[[Incoming, str], Awaitable[Reply]],
) -> dict[str, Route]:
    """Routes (path -> family, handler) for `paths` (path -> endpoint name), each calling
    `serve(request, endpoint)`."""

    def handler(endpoint: str) -> Handler:
        return lambda request: serve(request, endpoint)

    return {path: (family, handler(endpoint)) for path, endpoint in paths.items()}


class InferenceIngress:
    """Serve the inference POSTs and WebSockets; hand every other request to `app` (Litestar).

    `routes` maps exact paths to their route; `prefixes` maps path prefixes (Gemini's
    `/v1beta/models/`, `/v1/models/`) to theirs, tried only when no exact path matched;
    `sockets` maps exact paths to their WebSocket route.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: dict[str, Route],
        max_body: int,
        prefixes: dict[str, Route] | None = None,
        sockets: dict[str, SocketRoute] | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self.prefixes = tuple((prefixes or {}).items())
        self.sockets = sockets or {}
        self.max_body = max_body

    def route_for(self, path: str) -> Route | None:
        """The inference route serving a POST on `path`, if any."""
        route = self.routes.get(path)
        if route is None:
            for prefix, prefixed in self.prefixes:
                if path.startswith(prefix):
                    return prefixed
        return route

    def socket_for(self, path: str) -> SocketRoute | None:
        """The WebSocket route serving an upgraded `GET` on `path`, if any."""
        return self.sockets.get(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection."""
        route = None
        # Only an http scope has a method, so `scope` is an HTTPScope when it is looked at.
        if scope["type"] == "http" and cast(HTTPScope, scope)["method"] == "POST":
            route = self.route_for(scope["path"])
        elif scope["type"] == "websocket" and (socket := self.socket_for(scope["path"])):
            await serve_socket(socket, scope, receive, send)
            return
        if route is None:
            await self.app(scope, receive, send)
            return
        family, handler = route
        request_id = new_request_id()
        try:
            body = await read_body(receive, self.max_body)
            if body is None:  # the client left before sending its request
                return
            reply = await handler(Incoming(scope, body, request_id))
        except GatewayError as error:
            reply = error_reply(family, error, request_id)
        except Exception:  # a bug, not bad input: still answer in the family's shape
            reply = error_reply(family, internal_error(scope["path"], request_id), request_id)
        await write_reply(reply, receive, send)
