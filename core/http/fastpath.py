"""The inference POST routes served as a bare ASGI callable, in front of Litestar.

These few routes carry nearly all of the traffic and need none of Litestar's request
machinery (parameter parsing, dependency injection, response conversion), which measured at
2-3x the cost of a bare ASGI handler here (a trivial POST: 16-18k req/s through Litestar,
35-50k bare). Everything else — model listings, Gemini's `models/{m}:action` paths, the
Responses WebSocket, the admin API, the OpenAPI schema — goes to Litestar unchanged.

The ingress functions (`routes_openai.serve`, `routes_anthropic.serve`) see an
:class:`Incoming` with the few parts of a request they read, and return Litestar `Response`
or `Stream` objects, which :func:`send_response` writes out. A streamed reply stops as soon
as the client disconnects, so the pipeline meters what was delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast
from urllib.parse import parse_qsl

import structlog
from litestar import Response
from litestar.datastructures import Headers, MultiDict
from litestar.response import Stream
from litestar.types import (
    ASGIApp,
    HTTPReceiveMessage,
    HTTPScope,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)
from tokone.core.errors import GatewayError
from tokone.core.http.ingress import error_response, new_request_id
from tokone.core.types import Family

Handler = Callable[["Incoming"], Awaitable["Response[Any] | Stream"]]


class Incoming:
    """The parts of an HTTP request the ingress code reads, straight from the ASGI scope."""

    __slots__ = ("_body", "_headers", "scope")

    def __init__(self, scope: Scope, body: bytes) -> None:
        self.scope = scope
        self._body = body
        self._headers: Headers | None = None

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

    async def body(self) -> bytes:
        """The whole request body."""
        return self._body


class BodyTooLarge(Exception):
    """The request body is larger than `[server] max_body_bytes`."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """Read the request body, refusing one longer than `limit` bytes; None if the client
    went away before sending all of it."""
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
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


_OWN_HEADERS = frozenset({"content-type", "content-length"})
"""Headers `send_response` writes itself, whatever `response.headers` says."""


def _raw_headers(response: Response[Any], extra: list[tuple[bytes, bytes]]) -> list[Any]:
    """ASGI headers for `response`: each name once, `content-type` from its media type (or
    its headers when it has none), then `extra`."""
    headers: list[tuple[bytes, bytes]] = []
    content_type = str(response.media_type) if response.media_type else None
    for name, value in response.headers.items():
        lower = name.lower()
        if lower in _OWN_HEADERS:
            if lower == "content-type" and content_type is None:
                content_type = str(value)
            continue
        headers.append((lower.encode("latin-1"), str(value).encode("latin-1")))
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    return headers + extra


async def send_response(response: Response[Any] | Stream, receive: Receive, send: Send) -> None:
    """Write a Litestar `Response` (bytes content) or `Stream` to the ASGI `send`."""
    status = response.status_code or 200
    if not isinstance(response, Stream):
        body = response.content if isinstance(response.content, bytes) else b""
        headers = _raw_headers(response, [(b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        # more_body is optional in ASGI; litestar's TypedDict makes it required.
        await send({"type": "http.response.body", "body": body})  # type: ignore[arg-type]
        return
    await send(
        {"type": "http.response.start", "status": status, "headers": _raw_headers(response, [])}
    )
    iterator: AsyncIterator[bytes] = response.iterator  # type: ignore[assignment]
    pump = asyncio.ensure_future(_pump(iterator, send))
    watcher = asyncio.ensure_future(_until_disconnect(receive))
    try:
        await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, watcher):
            task.cancel()
        await asyncio.gather(pump, watcher, return_exceptions=True)
        await iterator.aclose()  # type: ignore[attr-defined]
    if not pump.cancelled() and pump.exception() is not None:
        raise pump.exception()  # type: ignore[misc]


async def _pump(iterator: AsyncIterator[bytes], send: Send) -> None:
    async for chunk in iterator:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    # more_body is optional in ASGI; litestar's TypedDict makes it required.
    await send({"type": "http.response.body", "body": b""})  # type: ignore[arg-type]


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message: ReceiveMessage = await receive()
        if message["type"] == "http.disconnect":
            return


def bind_routes(
    family: Family,
    paths: dict[str, str],
    serve: Callable[[Incoming, str], Awaitable[Response[Any] | Stream]],
) -> dict[str, tuple[Family, Handler]]:
    """Fast-path routes (path -> family, handler) for `paths` (path -> endpoint name), each
    calling `serve(request, endpoint)`."""

    def handler(endpoint: str) -> Handler:
        return lambda request: serve(request, endpoint)

    return {path: (family, handler(endpoint)) for path, endpoint in paths.items()}


class FastPath:
    """Serve `routes` (path -> family and handler) directly; hand the rest to `app`."""

    def __init__(
        self, app: ASGIApp, routes: dict[str, tuple[Family, Handler]], max_body: int
    ) -> None:
        self.app = app
        self.routes = routes
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI connection."""
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        # A route is only looked up for an http scope, so `scope` is an HTTPScope here.
        if route is None or cast(HTTPScope, scope)["method"] != "POST":
            await self.app(scope, receive, send)
            return
        family, handler = route
        try:
            body = await read_body(receive, self.max_body)
        except BodyTooLarge:
            error = GatewayError(
                "too_large", f"The request body is larger than {self.max_body} bytes."
            )
            await send_response(error_response(family, error, new_request_id()), receive, send)
            return
        if body is None:
            return
        try:
            response = await handler(Incoming(scope, body))
        except Exception:  # a bug, not bad input: still answer in the family's shape
            request_id = new_request_id()
            structlog.get_logger("tokone").exception(
                "request_failed", path=scope["path"], request_id=request_id
            )
            error = GatewayError("internal", "Internal error.")
            response = error_response(family, error, request_id)
        await send_response(response, receive, send)
