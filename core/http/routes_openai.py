"""OpenAI-family endpoints: chat, completions, embeddings, responses, models."""

from __future__ import annotations

from functools import partial
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import BaseRouteHandler
from litestar.response import Stream
from tokone.core import pipeline
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http import routes_gemini
from tokone.core.http.fastpath import Handler, Incoming, bind_routes
from tokone.core.http.ingress import (
    Choices,
    OutputCap,
    client_key,
    decode_body,
    error_response,
    new_request_id,
)
from tokone.core.model_names import check_model, model_allowed
from tokone.core.types import Call, Family, Principal

FAMILY = Family.OPENAI


class OpenAIParams(msgspec.Struct):
    """The only fields of an OpenAI request body the gateway reads."""

    model: str = ""
    stream: bool | None = False
    max_tokens: OutputCap | None = None
    max_completion_tokens: OutputCap | None = None
    max_output_tokens: OutputCap | None = None
    service_tier: str | None = None
    n: Choices | None = None
    best_of: Choices | None = None
    """Legacy completions: candidates generated (and billed) upstream, of which `n` return."""
    messages: list[msgspec.Raw] | None = None
    """Only checked to be an array (its items are passed on unparsed)."""


async def serve(gateway: Gateway, request: Incoming, endpoint: str) -> Response[Any] | Stream:
    """Authenticate, parse and run one OpenAI-family inference call."""
    request_id = new_request_id()
    try:
        key = client_key(request)
        principal = await pipeline.authenticate(gateway, key)
        raw = await request.body()
        params = decode_body(raw, OpenAIParams)
        if not params.model:
            raise GatewayError("invalid_request", "The 'model' field is required.", param="model")
        call = Call(
            request_id=request_id,
            family=FAMILY,
            endpoint=endpoint,
            model=check_model(params.model, slashes=True),
            raw=raw,
            stream=bool(params.stream) and endpoint in STREAMABLE,
            principal=principal,
            service_tier=params.service_tier,
            max_output_tokens=params.max_completion_tokens
            or params.max_tokens
            or params.max_output_tokens,
            choices=max(params.n or 1, params.best_of or 1),
        )
        return await pipeline.run(gateway, call)
    except GatewayError as error:
        return error_response(FAMILY, error, request_id)


STREAMABLE = frozenset({"chat.completions", "completions", "responses"})


def visible_models(gateway: Gateway, principal: Principal) -> list[str]:
    """Concrete model names the key may call, across enabled providers (wildcards omitted)."""
    names: set[str] = set()
    for adapter in gateway.adapters.values():
        if adapter.provider.enabled:
            names.update(m for m in adapter.provider.models if "*" not in m)
            names.update(adapter.provider.model_map)
    return sorted(m for m in names if model_allowed(m, principal.models))


def model_object(name: str) -> dict[str, Any]:
    """A model in OpenAI's `GET /v1/models` shape."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "tokone"}


def openai_handlers(gateway: Gateway) -> list[BaseRouteHandler]:
    """The OpenAI model listings (Litestar routes), bound to `gateway`."""

    @get("/v1/models", name="openai.models")
    async def list_models(request: Request[Any, Any, Any]) -> Response[Any]:
        if "anthropic-version" in request.headers:
            from tokone.core.http import routes_anthropic  # here: it imports this module

            return await routes_anthropic.list_models(gateway, request)
        if routes_gemini.wants_gemini(request):
            return await routes_gemini.list_models_response(gateway, request)
        try:
            principal = await pipeline.authenticate(gateway, client_key(request))
        except GatewayError as error:
            return error_response(FAMILY, error)
        data = [model_object(m) for m in visible_models(gateway, principal)]
        return Response({"object": "list", "data": data})

    @get("/v1/models/{model:path}", name="openai.model")
    async def get_model(request: Request[Any, Any, Any], model: str) -> Response[Any]:
        model = model.lstrip("/")
        if "anthropic-version" in request.headers:
            from tokone.core.http import routes_anthropic  # here: it imports this module

            return await routes_anthropic.get_model(gateway, request, model)
        if routes_gemini.wants_gemini(request):
            return await routes_gemini.get_model_response(gateway, request, model)
        try:
            principal = await pipeline.authenticate(gateway, client_key(request))
            if model not in visible_models(gateway, principal):
                raise GatewayError(
                    "model_not_found",
                    f"The model '{model}' does not exist or you do not have access to it. "
                    "GET /v1/models lists the models your key can use.",
                    param="model",
                )
        except GatewayError as error:
            return error_response(FAMILY, error)
        return Response(model_object(model))

    return [list_models, get_model]


INFERENCE_PATHS = {
    "/v1/chat/completions": "chat.completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/responses/input_tokens": "responses.input_tokens",
}


def openai_fast_routes(gateway: Gateway) -> dict[str, tuple[Family, Handler]]:
    """The OpenAI inference POSTs (path -> family, handler), served by the fast path."""
    return bind_routes(FAMILY, INFERENCE_PATHS, partial(serve, gateway))
