"""Gemini-family endpoints: `models/{model}:{action}` under `/v1beta` and `/v1`, and the models.

google-genai sends ``POST /{version}/models/{model}:{action}`` (``v1`` by default in the
installed 3.x, ``v1beta`` with ``api_version="v1beta"``) with the key in ``x-goog-api-key``;
``embed_content`` always goes to ``:batchEmbedContents`` and streams ask for ``?alt=sse``.
Litestar cannot split a path segment on ``:``, so one ``{model:path}`` parameter takes
``gemini-2.5-flash:generateContent`` and the handler splits it. The POST on
``/v1/models/{model:path}`` shares its path with OpenAI's ``GET /v1/models/{model}``; only the
methods differ. ``GET /v1/models[/{model}]`` itself is OpenAI's route, which answers in
Gemini's shape through :func:`list_models_response` / :func:`get_model_response` when the
request carries ``x-goog-api-key`` (see :func:`wants_gemini`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import BaseRouteHandler
from litestar.response import Stream
from tokone.core import pipeline
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http.ingress import (
    Choices,
    OutputCap,
    client_key,
    decode_body,
    error_response,
    new_request_id,
)
from tokone.core.model_names import check_model, model_allowed
from tokone.core.types import GEMINI_ACTIONS, Call, Family, Principal

FAMILY = Family.GEMINI
VERSIONS = ("v1beta", "v1")
METHODS = GEMINI_ACTIONS
STREAM = "streamGenerateContent"


class GenerationConfig(msgspec.Struct):
    """The one field of `generationConfig` the gateway reads (for the balance hold)."""

    maxOutputTokens: OutputCap | None = None
    max_output_tokens: OutputCap | None = None
    candidateCount: Choices | None = None
    candidate_count: Choices | None = None


class GeminiParams(msgspec.Struct):
    """The only fields of a Gemini request body the gateway reads (camelCase or snake_case)."""

    generationConfig: GenerationConfig | None = None
    generation_config: GenerationConfig | None = None

    def max_output_tokens(self) -> int | None:
        """The output cap the client set, if any."""
        config = self.generationConfig or self.generation_config
        if config is None:
            return None
        return config.maxOutputTokens or config.max_output_tokens

    def choices(self) -> int:
        """How many candidates the client asked for (1 unless it set `candidateCount`)."""
        config = self.generationConfig or self.generation_config
        if config is None:
            return 1
        return config.candidateCount or config.candidate_count or 1


def split_target(version: str, target: str) -> tuple[str, str]:
    """`gemini-2.5-flash:generateContent` -> (model, action); 404 for anything else."""
    model, sep, action = target.lstrip("/").rpartition(":")
    if not sep or not model or action not in METHODS:
        raise GatewayError(
            "not_found",
            f"Unknown path: POST /{version}/models/{target.lstrip('/')}. Expected "
            f"/{version}/models/{{model}}:{{{'|'.join(METHODS)}}}.",
        )
    return check_model(model), action


async def serve(
    gateway: Gateway, request: Request[Any, Any, Any], version: str, target: str
) -> Response[Any] | Stream:
    """Authenticate, parse and run one Gemini-family call."""
    request_id = new_request_id()
    try:
        key = client_key(request)
        principal = await pipeline.authenticate(gateway, key)
        model, action = split_target(version, target)
        raw = await request.body()
        params = decode_body(raw, GeminiParams)
        call = Call(
            request_id=request_id,
            family=FAMILY,
            endpoint=action,
            model=model,
            raw=raw,
            stream=action == STREAM,
            principal=principal,
            max_output_tokens=params.max_output_tokens(),
            choices=params.choices(),
        )
        call.api_version = version
        call.json_array = call.stream and request.query_params.get("alt") != "sse"
        return await pipeline.run(gateway, call)
    except GatewayError as error:
        return error_response(FAMILY, error, request_id)


def wants_gemini(request: Request[Any, Any, Any]) -> bool:
    """Whether a `GET /v1/models…` comes from a Gemini client (its key header, no Bearer)."""
    headers = request.headers
    return "x-goog-api-key" in headers and "authorization" not in headers


def gemini_models(gateway: Gateway, principal: Principal) -> list[str]:
    """Concrete model names the key may call through providers that speak Gemini natively."""
    names: set[str] = set()
    for adapter in gateway.adapters.values():
        if adapter.provider.enabled and FAMILY in adapter.families:
            names.update(m for m in adapter.provider.models if "*" not in m)
            names.update(adapter.provider.model_map)
    return sorted(m for m in names if model_allowed(m, principal.models))


def model_object(name: str) -> dict[str, Any]:
    """A model in Gemini's `GET /v1beta/models` shape."""
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "displayName": name,
        "description": f"{name}, served by TokOne.",
        "supportedGenerationMethods": list(METHODS),
    }


async def list_models_response(gateway: Gateway, request: Request[Any, Any, Any]) -> Response[Any]:
    """`GET /{version}/models` in Gemini's shape (all on one page)."""
    try:
        principal = await pipeline.authenticate(gateway, client_key(request))
    except GatewayError as error:
        return error_response(FAMILY, error)
    return Response({"models": [model_object(m) for m in gemini_models(gateway, principal)]})


async def get_model_response(
    gateway: Gateway, request: Request[Any, Any, Any], model: str
) -> Response[Any]:
    """`GET /{version}/models/{model}` in Gemini's shape; 404 for a model the key cannot use."""
    model = model.lstrip("/")
    try:
        principal = await pipeline.authenticate(gateway, client_key(request))
        if model not in gemini_models(gateway, principal):
            raise GatewayError(
                "model_not_found",
                f"models/{model} is not found or you do not have access to it. "
                "GET /v1beta/models lists the models your key can use.",
            )
    except GatewayError as error:
        return error_response(FAMILY, error)
    return Response(model_object(model))


def gemini_handlers(gateway: Gateway) -> list[BaseRouteHandler]:
    """The Gemini routes, bound to `gateway`."""

    def action_route(version: str) -> BaseRouteHandler:
        @post(f"/{version}/models/{{model:path}}", name=f"gemini.{version}.action", status_code=200)
        async def handler(request: Request[Any, Any, Any], model: str) -> Response[Any] | Stream:
            return await serve(gateway, request, version, model)

        return handler

    @get("/v1beta/models", name="gemini.models")
    async def list_models(request: Request[Any, Any, Any]) -> Response[Any]:
        return await list_models_response(gateway, request)

    @get("/v1beta/models/{model:path}", name="gemini.model")
    async def get_model(request: Request[Any, Any, Any], model: str) -> Response[Any]:
        return await get_model_response(gateway, request, model)

    return [*(action_route(v) for v in VERSIONS), list_models, get_model]
