"""Anthropic-family endpoints: messages, count_tokens, and the Anthropic shape of the model list.

The official SDK (``anthropic.Anthropic(base_url=GATEWAY_URL)``) posts to ``/v1/messages``
with ``x-api-key`` and ``anthropic-version`` (beta calls may add ``?beta=true`` and an
``anthropic-beta`` header, all forwarded upstream). ``GET /v1/models`` is shared with the
OpenAI family; a request carrying ``anthropic-version`` gets the Anthropic page from here.
Every failure is answered as ``{"type": "error", "error": {"type", "message"}}``. The POSTs are
served by the inference ingress (:mod:`tokone.core.http.inference`) through :func:`serve`.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from functools import partial
from typing import Any

from litestar import Request, Response
from tokone.core import pipeline
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http.inference import Incoming, Route, bind_routes
from tokone.core.http.routes_openai import BodyParams, start_call, visible_models
from tokone.core.types import Family, Principal, Reply

FAMILY = Family.ANTHROPIC
VERSION_HEADER = "anthropic-version"
REQUEST_TIERS = {"standard_only": "default"}
"""Anthropic's request `service_tier` -> the gateway's tier; `auto` lets the upstream decide."""
MODEL_CREATED_AT = "1970-01-01T00:00:00Z"


async def serve(gateway: Gateway, request: Incoming, endpoint: str) -> Reply:
    """Authenticate, parse and run one Anthropic-family call."""
    call, params = await start_call(
        gateway, request, FAMILY, endpoint, BodyParams, "model: Field required", {"messages"}
    )
    call.service_tier = REQUEST_TIERS.get(params.service_tier or "")
    call.max_output_tokens = params.max_tokens
    headers = request.headers
    call.api_version = headers.get(VERSION_HEADER) or None
    call.beta = ",".join(headers.getall("anthropic-beta", [])) or None
    call.beta_query = request.query_params.get("beta") == "true"
    return await pipeline.run(gateway, call)


def model_object(name: str) -> dict[str, Any]:
    """A model in Anthropic's `GET /v1/models` shape."""
    return {"type": "model", "id": name, "display_name": name, "created_at": MODEL_CREATED_AT}


def models_page(names: list[str], query: Any) -> dict[str, Any]:
    """One page of the sorted `names`, honouring `limit`, `after_id` and `before_id`."""
    try:
        limit = int(query.get("limit") or 20)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 1000:
        raise GatewayError("invalid_request", "limit: must be an integer from 1 to 1000")
    after, before = query.get("after_id"), query.get("before_id")
    if before and not after:
        end = bisect_left(names, before)
        start = max(0, end - limit)
        page, has_more = names[start:end], start > 0
    else:
        start = bisect_right(names, after) if after else 0
        page, has_more = names[start : start + limit], start + limit < len(names)
    return {
        "data": [model_object(name) for name in page],
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def list_models(
    gateway: Gateway, request: Request[Any, Any, Any], principal: Principal
) -> Response[Any]:
    """`GET /v1/models` for the Anthropic SDK: the models the key may use, paginated."""
    return Response(models_page(visible_models(gateway, principal), request.query_params))


def get_model(gateway: Gateway, principal: Principal, model: str) -> Response[Any]:
    """`GET /v1/models/{model_id}` for the Anthropic SDK."""
    if model not in visible_models(gateway, principal):
        raise GatewayError("model_not_found", f"model: {model}")
    return Response(model_object(model))


INFERENCE_PATHS = {"/v1/messages": "messages", "/v1/messages/count_tokens": "messages.count_tokens"}


def anthropic_inference_routes(gateway: Gateway) -> dict[str, Route]:
    """The Anthropic POSTs (path -> family, handler), served by the inference ingress; the
    model list lives in routes_openai."""
    return bind_routes(FAMILY, INFERENCE_PATHS, partial(serve, gateway))
