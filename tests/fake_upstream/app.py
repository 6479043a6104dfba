"""`FakeUpstream`: the three families joined on one aiohttp app, its route table, the
routes they share (``/v1/models`` answers in the family the request speaks) and the script
mode's ``main``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Callable

from aiohttp import web

from .anthropic_api import AnthropicRoutes
from .gemini_api import GeminiRoutes
from .openai_api import OpenAIRoutes
from .wire import ANTHROPIC, GEMINI, OPENAI, error_response, family_for, json_response


class FakeUpstream(OpenAIRoutes, AnthropicRoutes, GeminiRoutes):
    """Fake OpenAI / Anthropic / Gemini upstream on aiohttp (see the package docstring).

    ``start()`` runs it on a background thread with its own event loop, so plain sync
    tests can use it; all public methods are thread-safe.  It is also a context manager.
    """

    def build_app(self) -> web.Application:
        """Return the aiohttp application (routes only; no server is started)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/chat/completions", self._h_chat)
        r.add_post("/v1/completions", self._h_completions)
        r.add_post("/v1/embeddings", self._h_embeddings)
        r.add_post("/v1/responses", self._h_responses)
        r.add_get("/v1/responses", self._h_responses_ws)
        r.add_post("/v1/responses/input_tokens", self._h_responses_input_tokens)
        r.add_get("/v1/models", self._h_models_list)
        r.add_get("/v1/models/{name}", self._h_model_get)
        r.add_post("/v1/models/{name}", self._h_gemini_action)
        r.add_post("/v1/messages", self._h_messages)
        r.add_post("/v1/messages/count_tokens", self._h_count_tokens)
        r.add_get("/v1beta/models", self._h_gemini_models_list)
        r.add_get("/v1beta/models/{name}", self._h_gemini_model_get)
        r.add_post("/v1beta/models/{name}", self._h_gemini_action)
        r.add_post("/_control", self._h_control)
        r.add_get("/_requests", self._h_requests)
        r.add_post("/_reset", self._h_reset)
        r.add_route("*", "/{tail:.*}", self._h_not_found)
        app.on_shutdown.append(self._close_websockets)
        return app

    async def _h_models_list(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models``: the list of whichever family the request speaks."""
        family = family_for(request)
        if family == GEMINI:
            return await self._h_gemini_models_list(request)
        _, early = await self._prelude(request, family, need_body=False)
        if early is not None:
            return early
        if family == ANTHROPIC:
            data = [self._anthropic_model(m) for m in self.anthropic_models]
            return json_response(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            )
        return json_response(
            {"object": "list", "data": [self._openai_model(m) for m in self.models]}
        )

    async def _h_model_get(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models/{name}``: one model of whichever family the request speaks."""
        family = family_for(request)
        if family == GEMINI:
            return await self._h_gemini_model_get(request)
        _, early = await self._prelude(request, family, need_body=False)
        if early is not None:
            return early
        name = request.match_info["name"]
        if family == ANTHROPIC:
            if name not in self.anthropic_models:
                return error_response(ANTHROPIC, 404, f"model: {name}")
            return json_response(self._anthropic_model(name))
        if name not in self.models:
            return error_response(OPENAI, 404, f"The model '{name}' does not exist")
        return json_response(self._openai_model(name))


# --------------------------------------------------------------------------- script mode


def main(argv: list[str] | None = None) -> int:
    """Run the fake upstream in the foreground until killed (benchmark mode)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic/Gemini upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--require-key", default=None)
    parser.add_argument("--no-record", action="store_true", help="do not keep request records")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    parser.add_argument("--first-delay", type=float, default=0.0, help="s before chunk 1")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="s between chunks")
    args = parser.parse_args(argv)

    upstream = FakeUpstream(
        args.host,
        args.port,
        chunks=args.chunks,
        require_key=args.require_key,
        record=not args.no_record,
    )
    upstream.pace(args.first_delay, args.chunk_delay)

    async def serve() -> None:
        await upstream.start_async()
        print(f"listening on {upstream.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await upstream.stop_async()

    runner_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        try:
            import uvloop

            runner_factory = uvloop.new_event_loop
        except ImportError:
            runner_factory = None
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=runner_factory) as r:
        r.run(serve())
    return 0
