"""`pipeline.relay` in-process: how a stream's end is told apart from a client leaving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from tokone.core import pipeline
from tokone.core.config import ProviderConfig
from tokone.core.types import Call, Candidate, Family, Outcome
from tokone.core.upstream import UpstreamReply
from tokone.providers.openai import ChatStreamRelay

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"Hello"}}]}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n'
DONE = b"data: [DONE]\n\n"


async def upstream_that_lingers(*chunks: bytes) -> AsyncIterator[bytes]:
    """Sends `chunks`, then keeps the connection open (the upstream's close comes later)."""
    for chunk in chunks:
        yield chunk
    await asyncio.sleep(3600)


@pytest.mark.parametrize(
    ("chunks", "status"),
    [((CHUNK, USAGE, DONE), 200), ((CHUNK,), 499)],
    ids=["after-the-terminal-event", "mid-stream"],
)
def test_a_client_leaving_is_499_only_before_the_stream_completed(chunks, status):
    outcomes: list[Outcome] = []
    recorder = SimpleNamespace(  # a `meter` hookimpl as pluggy lists it
        function=lambda call, outcome, gateway: outcomes.append(outcome),
        argnames=("call", "outcome", "gateway"),
        plugin_name="recorder",
        hookwrapper=False,
        wrapper=False,
    )
    gateway = SimpleNamespace(
        hook=SimpleNamespace(
            price=lambda call, usage, gateway: None,
            meter=SimpleNamespace(get_hookimpls=lambda: [recorder]),
        ),
        log=None,
    )
    call = Call("r1", Family.OPENAI, "chat.completions", "m", raw=b"{}", stream=True)
    provider = ProviderConfig(name="p", adapter="mock", models=["m"])
    candidate = Candidate(provider, None, "m")  # type: ignore[arg-type]
    reply = UpstreamReply(
        status=200, headers={}, stream=upstream_that_lingers(*chunks), relay=ChatStreamRelay(call)
    )

    async def client_reads_then_leaves() -> None:
        relayed = pipeline.relay(gateway, call, candidate, reply)  # type: ignore[arg-type]
        for _ in chunks:
            await anext(relayed)
        await relayed.aclose()  # the client went away while upstream had not closed yet

    asyncio.run(client_reads_then_leaves())
    assert [o.status for o in outcomes] == [status]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"choices":[{"delta":{"content":"hi"}}],"usage":null}', False),
        (b'{"choices":[{"delta":{"content":"hi"}}], "usage": null}', False),
        (b'{"choices":[],"usage":{"prompt_tokens":1}}', True),
        (b'{"choices": [], "usage" : {"prompt_tokens": 1}}', True),
        (b'{"choices":[{"delta":{"content":"the \\"usage\\" key"}}]}', False),
        (b'data: {"usage":null}\n\ndata: {"usage": {"prompt_tokens": 1}}', True),
    ],
)
def test_only_events_that_may_carry_usage_are_parsed(data: bytes, expected: bool) -> None:
    """The chat relay's byte pre-check never misses a usage object, whatever the spacing."""
    from tokone.providers.openai import carries_usage

    assert carries_usage(data) is expected
