"""What every endpoint family shares at the door: keys, body parsing, error responses."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from litestar import Response
from litestar.connection import ASGIConnection
from tokone.core.errors import GatewayError, error_bytes
from tokone.core.types import Family

if TYPE_CHECKING:
    from tokone.core.http.fastpath import Incoming

QUERY_KEY_PARAMS = frozenset({"key", "api_key", "api-key", "apikey", "x-api-key", "x-goog-api-key"})
"""Query parameter names (compared case-insensitively, after percent-decoding) that carry a
key. Every one contains `key`, which the hot path's cheap pre-check relies on."""
MAX_OUTPUT_TOKENS = 10_000_000
"""The largest output cap (`max_tokens`, `maxOutputTokens`, ...) a request may ask for."""
OutputCap = Annotated[int, msgspec.Meta(ge=0, le=MAX_OUTPUT_TOKENS)]
"""An output-cap field: an integer (not a bool or float) from 0 to `MAX_OUTPUT_TOKENS`."""
MAX_CHOICES = 128
"""The most alternative outputs one call may ask for (OpenAI allows `n` up to 128)."""
Choices = Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)]
"""A choice-count field (`n`, `best_of`, `candidateCount`): an integer from 1 to
`MAX_CHOICES`."""
T = TypeVar("T")


def new_request_id() -> str:
    """A fresh request id, e.g. `req_9f1c…` (24 hex digits)."""
    return "req_" + secrets.token_hex(12)


def client_key(request: ASGIConnection[Any, Any, Any, Any] | Incoming) -> str | None:
    """The client's key from its headers; a key in the query string is refused (400).

    The query check comes first and wins even when a header also carries a key: a key in a
    URL ends up in proxy and server logs, so the client must learn to stop sending it.
    """
    if key_in_query(request.scope.get("query_string", b"")):
        raise GatewayError(
            "key_in_query",
            "API keys must not be sent in the URL. Send the key in the 'Authorization: "
            "Bearer' (or 'x-api-key' / 'x-goog-api-key') header instead.",
        )
    headers = request.headers
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or headers.get("x-goog-api-key") or None


def key_in_query(query: bytes) -> bool:
    """Whether the raw query string carries a key parameter, decoded as a server would.

    Names are percent- and `+`-decoded (``?%6Bey=`` is ``?key=``) and compared without
    regard to case. Cheap when there is nothing to find: a query without `%` and without
    `key` in any case cannot name a key parameter, so it is never parsed.
    """
    if not query or (b"%" not in query and b"key" not in query.lower()):
        return False
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return any(name.lower() in QUERY_KEY_PARAMS for name, _ in pairs)


def decode_body(raw: bytes, schema: type[T]) -> T:
    """Decode the few fields the gateway needs; a bad body is a 400, never a 500.

    Besides what `schema` checks, the body must be UTF-8 throughout (JSON's encoding; the
    fields the gateway skips are passed on unparsed, so they are checked here) and not
    nested beyond the decoder's recursion limit.
    """
    if not raw:
        raise GatewayError("invalid_request", "The request body is empty; expected a JSON object.")
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GatewayError(
                "invalid_request",
                f"The request body is not valid UTF-8 (byte {exc.start}).",
            ) from None
    try:
        return msgspec.json.decode(raw, type=schema)
    except RecursionError:
        raise GatewayError("invalid_request", "The request body is nested too deeply.") from None
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at ")
        field = where.strip("`").removeprefix("$").lstrip(".") or None
        raise GatewayError(
            "invalid_request",
            f"Invalid request body: {message}" + (f" (at '{field}')" if field else ""),
            param=field,
        ) from None
    except msgspec.DecodeError as exc:
        raise GatewayError(
            "invalid_request", f"The request body is not valid JSON: {exc}"
        ) from None


def error_response(
    family: Family, error: GatewayError, request_id: str | None = None
) -> Response[bytes]:
    """`error` as a response in `family`'s shape, with its status and headers."""
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Response(
        error_bytes(family, error),
        status_code=error.status,
        headers=headers,
        media_type="application/json",
    )


def family_for_path(path: str, headers: Any) -> Family:
    """Guess the family of a request the router could not match (for 404/405/413 bodies)."""
    if path.startswith("/v1beta") or ":" in path.rsplit("/", 1)[-1]:
        return Family.GEMINI
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return Family.ANTHROPIC
    return Family.OPENAI
