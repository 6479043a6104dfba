"""What every family shares: JSON, token counting, the reply text, usage (mis)reporting,
recorded requests, error shapes, stream frames and the family a request speaks."""

from __future__ import annotations

import base64
import functools
import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

dumps: Callable[[Any], bytes] = msgspec.json.Encoder().encode
loads: Callable[[bytes], Any] = msgspec.json.decode
DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.DecodeError, ValueError)

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
DEFAULT_ANTHROPIC_MODELS: tuple[str, ...] = ("claude-sonnet-4-6", "claude-haiku-4-5")
DEFAULT_GEMINI_MODELS: tuple[str, ...] = (
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-embedding-001",
)

OPENAI, ANTHROPIC, GEMINI = "openai", "anthropic", "gemini"
FINGERPRINT = "fp_fake0001"
UNKNOWN_MODEL = "unknown-model"
DEFAULT_DIMS = 8
_THOUGHTS_TOKENS = 3

# Event kinds inside a stream: preamble (never gated), content chunk, trailer.
PRE, CONTENT, POST = 0, 1, 2
Event = tuple[int, str | None, Any]  # (kind, SSE event name or None, dict payload or raw bytes)

_TEXT_KEYS = frozenset(
    {
        "messages",
        "content",
        "text",
        "parts",
        "contents",
        "input",
        "prompt",
        "system",
        "systemInstruction",
        "system_instruction",
        "instructions",
        "output",
        "requests",
        "generateContentRequest",
    }
)


# --------------------------------------------------------------------------- helpers


def _count_words(node: Any) -> int:
    """Words of every string under the counted keys; an integer is one."""
    if isinstance(node, str):
        return len(node.split())
    if isinstance(node, bool):
        return 0
    if isinstance(node, int):
        return 1
    if isinstance(node, list):
        return sum(_count_words(x) for x in node)
    if isinstance(node, dict):
        return sum(_count_words(v) for k, v in node.items() if k in _TEXT_KEYS)
    return 0


def count_input_tokens(body: Any) -> int:
    """Return the deterministic input-token count for a request body (see module doc)."""
    return max(1, _count_words(body))


@functools.lru_cache(maxsize=4096)
def reply_pieces(model: str, n: int = 16) -> tuple[str, ...]:
    """Return the ``n`` stream pieces of the reply for ``model`` (``n`` >= 1)."""
    if n < 1:
        raise ValueError("chunks must be >= 1")
    base = ["Hello", "from", f"{model}!"]
    words = base + ["tok"] * (n - 3) if n >= 3 else [*base[: n - 1], " ".join(base[n - 1 :])]
    return (words[0], *(" " + w for w in words[1:]))


def reply_text(model: str, n: int = 16) -> str:
    """Return the full (non-stream) reply text for ``model`` with ``n`` chunks."""
    return "".join(reply_pieces(model, n))


@functools.lru_cache(maxsize=1024)
def vector(index: int, dims: int) -> tuple[float, ...]:
    """Embedding ``index`` as floats: ``index + (j + 1) / 16`` for ``j < dims``."""
    return tuple(index + (j + 1) / 16 for j in range(dims))


@functools.lru_cache(maxsize=1024)
def vector_b64(index: int, dims: int) -> str:
    """Embedding ``index`` as base64 of little-endian float32, like the real API."""
    return base64.b64encode(struct.pack(f"<{dims}f", *vector(index, dims))).decode()


_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """A fresh id: ``prefix`` and a process-wide counter in 24 hex digits."""
    return f"{prefix}{next(_ids):024x}"


@dataclass(slots=True)
class Usage:
    """The token counts one reply reports, before the family puts them in shape."""

    input: int
    output: int
    cached: int
    thoughts: int


def count_usage(model: str, body: Any, chunks: int) -> Usage:
    """The usage of a reply of ``chunks`` pieces to ``body`` (see the package doc)."""
    inp = count_input_tokens(body)
    low = model.lower()
    return Usage(
        input=inp,
        output=chunks,
        cached=inp // 2 if "cached" in low else 0,
        thoughts=_THOUGHTS_TOKENS if "thinking" in low else 0,
    )


USAGE_MODES = frozenset({"omit", "negative", "garbage", "late"})
_GARBAGE = (True, 1.5, "12", 10**15)


def _misreport(usage: Any, mode: str | None) -> Any:
    """``usage`` (a usage dict) as ``misreport_usage(mode)`` reports it; None means omit it."""
    if mode is None or mode == "late" or not isinstance(usage, dict):
        return usage
    if mode == "omit":
        return None
    counter = itertools.count()

    def bad(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: bad(v) for k, v in value.items()}
        if isinstance(value, int) and not isinstance(value, bool):
            if mode == "negative":
                return -abs(value) - 1
            return _GARBAGE[next(counter) % len(_GARBAGE)]
        return value

    return bad(usage)


def set_usage(obj: dict[str, Any], key: str, usage: Any, mode: str | None) -> dict[str, Any]:
    """Put the (mis)reported ``usage`` under ``key`` of ``obj``; leave the key out for omit."""
    reported = _misreport(usage, mode)
    if reported is None and mode == "omit":
        obj.pop(key, None)
    else:
        obj[key] = reported
    return obj


def served_tier(body: dict[str, Any]) -> str:
    """The service tier an OpenAI reply reports: the requested one, `auto` -> `default`."""
    tier = body.get("service_tier")
    return "default" if tier in (None, "", "auto") else str(tier)


@dataclass(slots=True)
class Turn:
    """One generation request as a handler answers it: the JSON body, the model (or
    ``unknown-model``), the usage and stream pieces of the reply, the misreport mode."""

    body: dict[str, Any]
    model: str
    usage: Usage
    pieces: tuple[str, ...]
    mode: str | None


@dataclass(slots=True)
class RecordedRequest:
    """One request as seen by the fake upstream.

    ``method`` is the HTTP method (``"WS"`` for a WebSocket ``response.create`` frame),
    ``path`` the URL path, ``query`` the raw query string, ``headers`` a dict with
    lower-case names (for WS frames: the handshake headers) and ``json`` the parsed JSON
    body, or None when there was none or it was not JSON.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of the record."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
        }

    def __getitem__(self, key: str) -> Any:
        """Allow ``rec["json"]`` as well as ``rec.json``."""
        return getattr(self, key)


@dataclass(slots=True)
class StreamPlan:
    """What the failure injections do to one stream (None where nothing is queued)."""

    cut: int | None
    stall: tuple[int, float] | None
    delay: float
    first: float = 0.0


_OPENAI_ERR = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(family: str, status: int, message: str) -> dict[str, Any]:
    """The JSON body of an error with ``status`` in ``family``'s shape."""
    if family == ANTHROPIC:
        etype = _ANTHROPIC_ERR.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "type": "error",
            "error": {"type": etype, "message": message},
            "request_id": new_id("req_"),
        }
    if family == GEMINI:
        gstatus = _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": gstatus}}
    etype, code = _OPENAI_ERR.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def json_response(
    obj: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response of ``obj``."""
    return web.Response(
        body=dumps(obj), status=status, content_type="application/json", headers=headers
    )


def error_response(
    family: str, status: int, message: str, retry_after: str | None = None
) -> web.Response:
    """An error response in ``family``'s shape (with ``retry-after`` if given)."""
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return json_response(error_body(family, status, message), status=status, headers=headers)


def sse_frame(name: str | None, payload: Any) -> bytes:
    """One SSE frame (``event:`` line only when ``name`` is set)."""
    data = payload if isinstance(payload, bytes) else dumps(payload)
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def raw_frame(name: str | None, payload: Any) -> bytes:
    """The payload as it is (the frames of Gemini's JSON-array stream)."""
    return payload if isinstance(payload, bytes) else dumps(payload)


SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def family_for(request: web.Request) -> str:
    """The API family a request speaks, from its path, headers and query."""
    path = request.path
    h = request.headers
    if path.startswith("/v1beta/"):
        return GEMINI
    if "anthropic-version" in h or path.startswith("/v1/messages"):
        return ANTHROPIC
    if "x-goog-api-key" in h or "key" in request.query or ":" in path.rpartition("/")[2]:
        return GEMINI
    return OPENAI
