"""The Litestar application factory."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp
from sqlalchemy import text
from tokone.core.config import Config
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http.admin_auth import StrictStructSchemaPlugin
from tokone.core.http.fastpath import FastPath
from tokone.core.http.ingress import error_response, family_for_path, new_request_id
from tokone.core.http.routes_anthropic import anthropic_fast_routes
from tokone.core.http.routes_gemini import gemini_handlers
from tokone.core.http.routes_openai import openai_fast_routes, openai_handlers
from tokone.core.http.routes_responses_ws import responses_ws_handlers
from tokone.core.logs import configure_logging

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


def ping_database(gateway: Gateway) -> None:
    """One `SELECT 1` round trip (raises if the database is unreachable)."""
    with gateway.engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def create_app(config: Config, gateway: Gateway | None = None) -> ASGIApp:
    """Build the ASGI app for `config` (or an already-built `gateway`): the inference POSTs
    on the fast path, everything else on Litestar."""
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

    extra: list[Any] = [h for found in gateway.hook.routes(gateway=gateway) for h in found or ()]
    app = Litestar(
        route_handlers=[
            *openai_handlers(gateway),
            *responses_ws_handlers(gateway),
            *gemini_handlers(gateway),
            healthz,
            readyz,
            *extra,
        ],
        on_startup=[gateway.start],
        on_shutdown=[gateway.stop],
        exception_handlers={
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
    routes = {**openai_fast_routes(gateway), **anthropic_fast_routes(gateway)}
    return FastPath(app, routes, config.server.max_body_bytes)
