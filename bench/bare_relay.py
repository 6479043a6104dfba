"""The floor for a Python relay: a raw ASGI app that forwards a POST and streams the answer.

    .venv/bin/python bench/bare_relay.py --port P --upstream http://127.0.0.1:U

No auth, no parsing, no billing: the body goes to the same path on the upstream through one
pooled aiohttp session (no connection cap) and every upstream chunk is written straight to
`send`. Served by uvicorn with the settings `tokone serve` uses (uvloop/httptools via "auto",
no access log), so bench/run.py --paced can set TokOne's CPU per chunk against it.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import uvicorn

JSON = {"content-type": "application/json"}


def make_app(upstream: str) -> Callable[..., Awaitable[None]]:
    """The relay as an ASGI callable forwarding to `upstream`."""
    session: list[aiohttp.ClientSession] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: nothing to set up
            message = await receive()
            await send({"type": f"{message['type']}.complete"})
            return
        if not session:
            connector = aiohttp.TCPConnector(limit=0)
            session.append(aiohttp.ClientSession(connector=connector))
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = upstream + scope["path"]
        async with session[0].request(scope["method"], url, data=body, headers=JSON) as reply:
            ctype = reply.headers.get("content-type", "application/json").encode()
            headers = [(b"content-type", ctype)]
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            async for chunk in reply.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:8001")
    args = parser.parse_args()
    uvicorn.run(
        make_app(args.upstream.rstrip("/")),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
    )
