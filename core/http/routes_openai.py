"""OpenAI-family endpoints: chat, completions, embeddings, responses, models.

The inference POSTs are served by the inference ingress (:mod:`tokone.core.http.inference`)
through :func:`serve`; the model listings are Litestar routes that get the caller from the
app's `principal` dependency and answer a Gemini or Anthropic client in its own shape.
"""

from __future__ import annotations

from collections.abc import Container
from functools import partial
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, get
from litestar.handlers import BaseRouteHandler
from tokone.core import pipeline
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http import routes_gemini
from tokone.core.http.inference import Incoming, Route, bind_routes
from tokone.core.http.ingress import (
    FAMILY_OPT,
    Caller,
    Choices,
    OutputCap,
    client_address,
    client_key,
    decode_body,
    listing_family,
)
from tokone.core.http.listing import model_names
from tokone.core.model_names import check_model
from tokone.core.types import Call, Family, Principal, Reply

FAMILY = Family.OPENAI


class BodyParams(msgspec.Struct):
    """The fields of a request body the gateway reads in both the OpenAI and Anthropic families."""

    model: str = ""
    stream: bool | None = False
    max_tokens: OutputCap | None = None
    service_tier: str | None = None
    messages: list[msgspec.Raw] | None = None
    """Only checked to be an array (its items are passed on unparsed)."""


class OpenAIParams(BodyParams):
    """The only fields of an OpenAI request body the gateway reads."""

    max_completion_tokens: OutputCap | None = None
    max_output_tokens: OutputCap | None = None
    n: Choices | None = None
    best_of: Choices | None = None
    """Legacy completions: candidates generated (and billed) upstream, of which `n` return."""


Params = TypeVar("Params", bound=BodyParams)


async def start_call(
    gateway: Gateway,
    request: Incoming,
    family: Family,
    endpoint: str,
    params_type: type[Params],
    no_model: str,
    streamable: Container[str],
) -> tuple[Call, Params]:
    """Authenticate the caller and read `params_type` from the body: the call with the fields
    both families set alike, and the params for the rest. A body without `model` is refused
    with `no_model` (each family words it its own way)."""
    principal = await pipeline.authenticate(gateway, client_key(request))
    raw = request.body
    params = decode_body(raw, params_type)
    if not params.model:
        raise GatewayError("invalid_request", no_model, param="model")
    call = Call(
        request_id=request.request_id,
        family=family,
        endpoint=endpoint,
        model=check_model(params.model, slashes=True),
        raw=raw,
        stream=bool(params.stream) and endpoint in streamable,
        principal=principal,
        client=client_address(request),
    )
    return call, params


async def serve(gateway: Gateway, request: Incoming, endpoint: str) -> Reply:
    """Authenticate, parse and run one OpenAI-family inference call."""
    call, params = await start_call(
        gateway,
        request,
        FAMILY,
        endpoint,
        OpenAIParams,
        "The 'model' field is required.",
        STREAMABLE,
    )
    call.service_tier = params.service_tier
    call.max_output_tokens = (
        params.max_completion_tokens or params.max_tokens or params.max_output_tokens
    )
    call.choices = max(params.n or 1, params.best_of or 1)
    return await pipeline.run(gateway, call)


STREAMABLE = frozenset({"chat.completions", "completions", "responses"})


def visible_models(gateway: Gateway, principal: Principal) -> list[str]:
    """Concrete model names the key may call, across enabled providers (wildcards omitted)."""
    return model_names(gateway.adapters.values(), principal)


def model_object(name: str) -> dict[str, Any]:
    """A model in OpenAI's `GET /v1/models` shape."""
    return {"id": name, "object": "model", "created": 0, "owned_by": "tokone"}


def openai_handlers(gateway: Gateway) -> list[BaseRouteHandler]:
    """The OpenAI model listings (Litestar routes), bound to `gateway`."""
    from tokone.core.http import routes_anthropic  # here: it imports this module

    opt = {FAMILY_OPT: listing_family}

    @get("/v1/models", name="openai.models", opt=opt)
    async def list_models(request: Request[Any, Any, Any], principal: Caller) -> Response[Any]:
        family = listing_family(request.headers)
        if family is Family.ANTHROPIC:
            return routes_anthropic.list_models(gateway, request, principal)
        if family is Family.GEMINI:
            return routes_gemini.list_models_response(gateway, principal)
        data = [model_object(m) for m in visible_models(gateway, principal)]
        return Response({"object": "list", "data": data})

    @get("/v1/models/{model:path}", name="openai.model", opt=opt)
    async def get_model(
        request: Request[Any, Any, Any], principal: Caller, model: str
    ) -> Response[Any]:
        model = model.lstrip("/")
        family = listing_family(request.headers)
        if family is Family.ANTHROPIC:
            return routes_anthropic.get_model(gateway, principal, model)
        if family is Family.GEMINI:
            return routes_gemini.get_model_response(gateway, principal, model)
        if model not in visible_models(gateway, principal):
            raise GatewayError(
                "model_not_found",
                f"The model '{model}' does not exist or you do not have access to it. "
                "GET /v1/models lists the models your key can use.",
                param="model",
            )
        return Response(model_object(model))

    return [list_models, get_model]


INFERENCE_PATHS = {
    "/v1/chat/completions": "chat.completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/responses/input_tokens": "responses.input_tokens",
}


def openai_inference_routes(gateway: Gateway) -> dict[str, Route]:
    """The OpenAI inference POSTs (path -> family, handler), served by the inference ingress."""
    return bind_routes(FAMILY, INFERENCE_PATHS, partial(serve, gateway))
