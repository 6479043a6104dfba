"""Gemini-family endpoints: `models/{model}:{action}` under `/v1beta` and `/v1`, and the models.

google-genai sends ``POST /{version}/models/{model}:{action}`` (``v1`` by default in the
installed 3.x, ``v1beta`` with ``api_version="v1beta"``) with the key in ``x-goog-api-key``;
``embed_content`` always goes to ``:batchEmbedContents`` and streams ask for ``?alt=sse``.
The POSTs are served by the inference ingress (:mod:`tokone.core.http.inference`): every POST
under ``/v1beta/models/`` and ``/v1/models/`` comes to :func:`serve`, which splits
``gemini-2.5-flash:generateContent`` into model and action (404 in Gemini's shape for
anything else). ``POST /v1/models/…`` shares its path with OpenAI's ``GET /v1/models/{model}``;
only the methods differ. ``GET /v1/models[/{model}]`` itself is OpenAI's route, which answers
in Gemini's shape through :func:`list_models_response` / :func:`get_model_response` when the
request carries ``x-goog-api-key`` (see :func:`tokone.core.http.ingress.wants_gemini`).
The listings name every model a Gemini client can call: through a Gemini channel or a
translated one (:func:`tokone.core.http.listing.family_models`).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get
from litestar.handlers import BaseRouteHandler
from tokone.core import pipeline
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.http.inference import Incoming, Route
from tokone.core.http.ingress import (
    FAMILY_OPT,
    Caller,
    Choices,
    OutputCap,
    client_address,
    client_key,
    decode_body,
)
from tokone.core.http.listing import family_models
from tokone.core.model_names import check_model
from tokone.core.types import GEMINI_ACTIONS, Call, Family, Principal, Reply

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


async def serve(gateway: Gateway, request: Incoming, version: str) -> Reply:
    """Authenticate, parse and run one Gemini-family call (`POST /{version}/models/…`)."""
    principal = await pipeline.authenticate(gateway, client_key(request))
    model, action = split_target(version, request.path.removeprefix(f"/{version}/models/"))
    raw = request.body
    params = decode_body(raw, GeminiParams)
    call = Call(
        request_id=request.request_id,
        family=FAMILY,
        endpoint=action,
        model=model,
        raw=raw,
        stream=action == STREAM,
        principal=principal,
        client=client_address(request),
        max_output_tokens=params.max_output_tokens(),
        choices=params.choices(),
    )
    call.api_version = version
    call.json_array = call.stream and request.query_params.get("alt") != "sse"
    return await pipeline.run(gateway, call)


def gemini_inference_prefixes(gateway: Gateway) -> dict[str, Route]:
    """The Gemini POSTs (path prefix -> family, handler), served by the inference ingress."""

    def route(version: str) -> Route:
        return FAMILY, lambda request: serve(gateway, request, version)

    return {f"/{version}/models/": route(version) for version in VERSIONS}


def gemini_models(gateway: Gateway, principal: Principal) -> list[str]:
    """Concrete model names the key may call from Gemini: natively or through a translator."""
    return family_models(gateway, principal, FAMILY, METHODS)


def model_object(name: str) -> dict[str, Any]:
    """A model in Gemini's `GET /v1beta/models` shape."""
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "displayName": name,
        "description": f"{name}, served by TokOne.",
        "supportedGenerationMethods": list(METHODS),
    }


def list_models_response(gateway: Gateway, principal: Principal) -> Response[Any]:
    """`GET /{version}/models` in Gemini's shape (all on one page)."""
    return Response({"models": [model_object(m) for m in gemini_models(gateway, principal)]})


def get_model_response(gateway: Gateway, principal: Principal, model: str) -> Response[Any]:
    """`GET /{version}/models/{model}` in Gemini's shape; 404 for a model the key cannot use."""
    model = model.lstrip("/")
    if model not in gemini_models(gateway, principal):
        raise GatewayError(
            "model_not_found",
            f"models/{model} is not found or you do not have access to it. "
            "GET /v1beta/models lists the models your key can use.",
        )
    return Response(model_object(model))


def gemini_handlers(gateway: Gateway) -> list[BaseRouteHandler]:
    """The Gemini model listings under `/v1beta` (Litestar routes), bound to `gateway`."""
    opt = {FAMILY_OPT: FAMILY}

    @get("/v1beta/models", name="gemini.models", opt=opt)
    async def list_models(principal: Caller) -> Response[Any]:
        return list_models_response(gateway, principal)

    @get("/v1beta/models/{model:path}", name="gemini.model", opt=opt)
    async def get_model(principal: Caller, model: str) -> Response[Any]:
        return get_model_response(gateway, principal, model)

    return [list_models, get_model]
