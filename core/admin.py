"""Admin API authentication: bearer tokens from `[server] admin_keys`, distinct from user keys."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from tokone.core.gateway import Gateway

ADMIN_PATH = "/admin"


def admin_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The bearer token of an admin request ('' when absent)."""
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def make_admin_guard(gateway: Gateway) -> Any:
    """A Litestar guard admitting only the configured admin keys (compared in constant time)."""
    keys = [k.encode() for k in gateway.config.server.admin_keys if k]

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        token = admin_token(connection).encode()
        if not token or not any(hmac.compare_digest(token, k) for k in keys):
            raise NotAuthorizedException(
                "A valid admin key is required (Authorization: Bearer <admin key>); "
                "admin keys are set in [server] admin_keys."
            )

    return guard
