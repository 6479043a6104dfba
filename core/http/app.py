"""The application factory: the inference ingress in front of the Litestar app.

Architecture: :class:`~tokone.core.http.inference.InferenceIngress` serves every inference
endpoint of every family — the POSTs and the Responses WebSocket (bare ASGI, see its
module); Litestar serves the rest and has no inference route. A route that
needs the caller takes a `principal: Caller` parameter (see
:data:`tokone.core.http.ingress.Caller`), filled by the app's `principal` dependency from
the key. A `GatewayError` raised by a route or by that dependency is answered by one
app-level handler in the route's family shape (the route's `opt["family"]`, else
:func:`~tokone.core.http.ingress.family_for_path`), so routes raise instead of catching.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from typing import Any, cast

import structlog
from litestar import Litestar, Request, Response, get
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp
from sqlalchemy import text
from tokone.core import pipeline
from tokone.core.config import Config
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http.admin_auth import StrictStructSchemaPlugin
from tokone.core.http.inference import InferenceIngress
from tokone.core.http.ingress import (
    FAMILY_OPT,
    client_key,
    error_response,
    family_for_path,
    new_request_id,
)
from tokone.core.http.routes_anthropic import anthropic_inference_routes
from tokone.core.http.routes_gemini import gemini_handlers, gemini_inference_prefixes
from tokone.core.http.routes_openai import openai_handlers, openai_inference_routes
from tokone.core.http.routes_responses_ws import responses_ws_routes
from tokone.core.logs import configure_logging
from tokone.core.types import Family, Principal

_HTTP_KINDS = {
    400: "invalid_request",
    401: "authentication",
    403: "forbidden",
    404: "not_found",
    405: "invalid_request",
    413: "too_large",
    429: "rate_limited",
}


def http_exception_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar's own errors (unknown path, wrong method, body too large) in the family's shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    kind = _HTTP_KINDS.get(status, "internal")
    message = exc.detail if isinstance(exc, HTTPException) else "Internal error."
    if status == 404:
        message = f"Unknown path: {request.method} {request.url.path}"
    family = family_for_path(request.url.path, request.headers)
    request_id = new_request_id()
    if status >= 500:
        structlog.get_logger("tokone").error(
            "request_failed", path=request.url.path, request_id=request_id, exc_info=exc
        )
    return error_response(family, GatewayError(kind, str(message), status=status), request_id)


def route_family(request: Request[Any, Any, Any]) -> Family:
    """The family a Litestar route answers errors in (see `FAMILY_OPT`)."""
    handler = request.scope.get("route_handler")
    family = handler.opt.get(FAMILY_OPT) if handler is not None else None
    if callable(family):
        return cast(Family, family(request.headers))
    return family or family_for_path(request.url.path, request.headers)


def gateway_error_handler(request: Request[Any, Any, Any], exc: GatewayError) -> Response[bytes]:
    """A `GatewayError` raised in a Litestar route, answered in the route's family shape."""
    return error_response(route_family(request), exc, new_request_id())


def ping_database(gateway: Gateway) -> None:
    """One `SELECT 1` round trip (raises if the database is unreachable)."""
    with gateway.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def create_app(config: Config, gateway: Gateway | None = None) -> ASGIApp:
    """Build the ASGI app for `config` (or an already-built `gateway`): the inference POSTs
    and WebSocket on the inference ingress, everything else on Litestar."""
    configure_logging(config.server.log_level)
    gateway = gateway or Gateway(config)

    @get("/healthz", name="healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/readyz", name="readyz", include_in_schema=False)
    async def readyz() -> Response[dict[str, str]]:
        try:
            await asyncio.to_thread(ping_database, gateway)
        except Exception as exc:
            return Response({"status": "unavailable", "database": str(exc)[:200]}, status_code=503)
        return Response({"status": "ok", "database": "ok"})

    async def principal(request: Request[Any, Any, Any]) -> Principal:
        """The caller, from its key (a `GatewayError` for a missing or refused one)."""
        return await pipeline.authenticate(gateway, client_key(request))

    extra: list[Any] = [h for found in gateway.hook.routes(gateway=gateway) for h in found or ()]
    app = Litestar(
        route_handlers=[
            *openai_handlers(gateway),
            *gemini_handlers(gateway),
            healthz,
            readyz,
            *extra,
        ],
        on_startup=[gateway.start, freeze_startup_objects],
        on_shutdown=[gateway.stop],
        dependencies={"principal": Provide(principal)},
        exception_handlers={
            GatewayError: gateway_error_handler,
            HTTPException: http_exception_handler,
            Exception: http_exception_handler,
        },
        request_max_body_size=config.server.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="TokOne", version="0.1.0", path="/schema", use_handler_docstrings=True
        ),
        debug=False,
        plugins=[StrictStructSchemaPlugin()],
    )
    routes = {**openai_inference_routes(gateway), **anthropic_inference_routes(gateway)}
    prefixes = gemini_inference_prefixes(gateway)
    sockets = responses_ws_routes(gateway)
    return InferenceIngress(app, routes, config.server.max_body_bytes, prefixes, sockets)


@functools.cache  # once per process
def freeze_startup_objects() -> None:
    """Move what is alive once the gateway has started into the GC's permanent generation.

    The app, its routes, plugins and caches (~150k objects) live as long as the process;
    left in the collector's view, every full collection walks all of them: ~120 ms with the
    event loop stopped on the 2-core bench machine, the chat_c1/chat_c32 p99 tail
    (bench/README.md). Frozen, a full collection takes 2-4 ms. Once per process.
    """
    gc.collect()
    gc.freeze()
