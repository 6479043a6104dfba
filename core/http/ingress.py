"""What every endpoint family shares at the door: keys, body parsing, error answers.

Used by the inference ingress (:mod:`tokone.core.http.inference`, which answers with a
:class:`~tokone.core.types.Reply`: :func:`error_reply`) and by the Litestar routes (model
listings, dashboard, admin API: :func:`error_response`, and the app-level `GatewayError`
handler, which picks the family with :func:`family_for_path`).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated, Any, TypeVar
from urllib.parse import parse_qsl

import msgspec
from litestar import Response
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from tokone.core.errors import GatewayError, error_bytes
from tokone.core.types import ClientAddress, Family, Principal, Reply

if TYPE_CHECKING:
    from tokone.core.http.inference import Incoming

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
Caller = NamedDependency[Principal]
"""The type of a Litestar route's `principal` parameter: the caller, authenticated from its
key by the app's `principal` dependency (a refused key never reaches the route)."""
FAMILY_OPT = "family"
"""The key of a Litestar route's `opt` naming the family its errors are answered in: a
:class:`Family`, or a function of the request headers returning one (see the app's
`GatewayError` handler); a route without it gets :func:`family_for_path`'s guess."""
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


def client_address(request: ASGIConnection[Any, Any, Any, Any] | Incoming) -> ClientAddress:
    """The TCP peer and the proxy headers of a request, unjudged (see :class:`ClientAddress`)."""
    peer = request.scope.get("client")
    headers = request.headers
    return ClientAddress(
        peer=peer[0] if peer else None,
        forwarded_for=",".join(headers.getall("x-forwarded-for", [])),
        forwarded=",".join(headers.getall("forwarded", [])),
    )


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


def error_reply(family: Family, error: GatewayError, request_id: str | None = None) -> Reply:
    """`error` as a reply in `family`'s shape, with its status and headers."""
    headers = dict(error.headers)
    if request_id:
        headers["x-request-id"] = request_id
    return Reply(error.status, error_bytes(family, error), headers)


def error_response(
    family: Family, error: GatewayError, request_id: str | None = None
) -> Response[bytes]:
    """`error` as a Litestar response in `family`'s shape (for the Litestar routes)."""
    reply = error_reply(family, error, request_id)
    return Response(
        reply.body, status_code=reply.status, headers=reply.headers, media_type=reply.media_type
    )


def wants_gemini(headers: Any) -> bool:
    """Whether a `GET /v1/models…` comes from a Gemini client (its key header, no Bearer)."""
    return "x-goog-api-key" in headers and "authorization" not in headers


def listing_family(headers: Any) -> Family:
    """The family `GET /v1/models[/{model}]` answers in (it is shared by all three)."""
    if "anthropic-version" in headers:
        return Family.ANTHROPIC
    return Family.GEMINI if wants_gemini(headers) else Family.OPENAI


def family_for_path(path: str, headers: Any) -> Family:
    """Guess the family of a request no route declares one for (an unknown path, a wrong
    method, a body too large: their 404/405/413 bodies)."""
    if path.startswith("/v1beta") or ":" in path.rsplit("/", 1)[-1]:
        return Family.GEMINI
    if path.startswith("/v1/messages") or "anthropic-version" in headers:
        return Family.ANTHROPIC
    return Family.OPENAI
