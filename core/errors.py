"""Gateway errors and the three API families' error shapes.

Every refusal is a :class:`GatewayError` carrying an HTTP status and a family-neutral kind;
:func:`error_body` renders it as OpenAI ``{"error": {...}}``, Anthropic
``{"type": "error", "error": {...}}`` or Gemini ``{"error": {"code", "message", "status"}}``,
so each official SDK raises its matching exception.
"""

from __future__ import annotations

from typing import Any

import msgspec
from tokone.core.types import Family

# kind -> (status, OpenAI type, OpenAI code, Anthropic type, Gemini status)
_KINDS: dict[str, tuple[int, str, str | None, str, str]] = {
    "invalid_request": (
        400,
        "invalid_request_error",
        None,
        "invalid_request_error",
        "INVALID_ARGUMENT",
    ),
    "key_in_query": (
        400,
        "invalid_request_error",
        "api_key_in_query",
        "invalid_request_error",
        "INVALID_ARGUMENT",
    ),
    "authentication": (
        401,
        "invalid_request_error",
        "invalid_api_key",
        "authentication_error",
        "UNAUTHENTICATED",
    ),
    "insufficient_balance": (
        402,
        "insufficient_quota",
        "insufficient_quota",
        "billing_error",
        "RESOURCE_EXHAUSTED",
    ),
    "forbidden": (
        403,
        "permission_error",
        "permission_denied",
        "permission_error",
        "PERMISSION_DENIED",
    ),
    "model_not_allowed": (
        403,
        "permission_error",
        "model_not_allowed",
        "permission_error",
        "PERMISSION_DENIED",
    ),
    "not_found": (404, "invalid_request_error", "not_found", "not_found_error", "NOT_FOUND"),
    "model_not_found": (
        404,
        "invalid_request_error",
        "model_not_found",
        "not_found_error",
        "NOT_FOUND",
    ),
    "too_large": (
        413,
        "invalid_request_error",
        "request_too_large",
        "request_too_large",
        "INVALID_ARGUMENT",
    ),
    "rate_limited": (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
        "rate_limit_error",
        "RESOURCE_EXHAUSTED",
    ),
    "upstream": (502, "api_error", "upstream_error", "api_error", "INTERNAL"),
    "unavailable": (503, "api_error", "no_healthy_upstream", "overloaded_error", "UNAVAILABLE"),
    "timeout": (504, "api_error", "upstream_timeout", "api_error", "DEADLINE_EXCEEDED"),
    "internal": (500, "api_error", "internal_error", "api_error", "INTERNAL"),
}
NO_RETRY_STATUSES = frozenset({400, 401, 402, 403, 404, 413})


class GatewayError(Exception):
    """A refusal or failure to send to the client in its family's error shape."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        if kind not in _KINDS:
            raise ValueError(f"unknown error kind {kind!r}")
        self.kind = kind
        self.message = message
        self.status = status or _KINDS[kind][0]
        self.headers = dict(headers or {})
        self.param = param
        if self.status in NO_RETRY_STATUSES:
            self.headers.setdefault("x-should-retry", "false")


def error_body(family: Family, error: GatewayError) -> dict[str, Any]:
    """The JSON body for `error` in `family`'s shape."""
    _, oa_type, oa_code, an_type, gm_status = _KINDS[error.kind]
    if family is Family.ANTHROPIC:
        return {"type": "error", "error": {"type": an_type, "message": error.message}}
    if family is Family.GEMINI:
        return {"error": {"code": error.status, "message": error.message, "status": gm_status}}
    return {
        "error": {"message": error.message, "type": oa_type, "param": error.param, "code": oa_code}
    }


def error_bytes(family: Family, error: GatewayError) -> bytes:
    """`error_body` encoded as JSON."""
    return msgspec.json.encode(error_body(family, error))


def sse_error_event(family: Family, error: GatewayError) -> bytes:
    """An in-stream error event the family's SDK raises on, for failures after the first byte."""
    body = msgspec.json.encode(error_body(family, error))
    if family is Family.ANTHROPIC:
        return b"event: error\ndata: " + body + b"\n\n"
    return b"data: " + body + b"\n\n"
