"""The per-channel upstream connection pool: no hidden cap, and a named error when it is full.

A real gateway in front of the fake upstream. The fake upstream holds every stream's first
chunk until all of them are open at once (`FakeUpstream.hold_until_open`), so with the old
hidden cap of 100 connections per channel at most 100 were ever open upstream and call 101
waited for a free connection. Nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
from conftest import HELLO, provider
from fake_upstream import FakeUpstream, reply_text

STREAMS = 300
CHUNKS = 8


async def stream_one(client: aiohttp.ClientSession, url: str, key: str) -> tuple[int, str]:
    """One streamed chat completion: (status, the concatenated content or the error body)."""
    body = {"model": "gpt-4o-mini", "messages": HELLO, "stream": True, "max_tokens": 50}
    headers = {"authorization": f"Bearer {key}"}
    async with client.post(url, json=body, headers=headers) as response:
        if response.status != 200:
            return response.status, await response.text()
        text = []
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:]).get("choices", []):
                    text.append(choice.get("delta", {}).get("content") or "")
        return 200, "".join(text)


async def many(url: str, key: str, count: int) -> list[tuple[int, str]]:
    """`count` concurrent streams through the gateway, from a client with no pool cap
    (aiohttp: httpx's pool spends seconds of CPU on hundreds of connections at once)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=30.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        return await asyncio.gather(*(stream_one(client, url, key) for _ in range(count)))


def test_300_concurrent_streams_through_one_channel_all_complete(make_gateway, make_fake_upstream):
    upstream: FakeUpstream = make_fake_upstream(chunks=CHUNKS, record=False)
    upstream.pace(0.05, 0.05)
    upstream.hold_until_open(STREAMS, timeout=20.0)  # a capped pool never gets there
    timeouts = "timeouts = { connect = 10.0, first_byte = 60.0, idle = 60.0 }"
    gateway = make_gateway(provider("only", upstream.base_url + "/v1", extra=timeouts), mock=False)
    key = gateway.funded_key()

    results = asyncio.run(many(gateway.url + "/v1/chat/completions", key, STREAMS))

    expected = reply_text("gpt-4o-mini", CHUNKS)
    failed = [r for r in results if r != (200, expected)]
    assert not failed, f"{len(failed)} of {STREAMS} failed, first: {failed[0]}"
    assert upstream.peak_streams == STREAMS


def test_a_full_pool_fails_with_an_error_naming_the_pool(make_gateway, make_fake_upstream):
    upstream: FakeUpstream = make_fake_upstream(chunks=4)
    upstream.pace(0.0, 1.0)  # headers at once, then slow chunks: each call holds its connection
    gateway = make_gateway(
        provider(
            "small",
            upstream.base_url + "/v1",
            extra="max_connections = 2\ntimeouts = { connect = 1.0, first_byte = 0.5, idle = 5.0 }",
        ),
        mock=False,
    )
    key = gateway.funded_key()

    results = asyncio.run(many(gateway.url + "/v1/chat/completions", key, 3))

    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 504], results
    message = next(text for status, text in results if status == 504)
    error = json.loads(message)["error"]
    assert error["code"] == "upstream_timeout"
    assert "small: connection pool exhausted (max_connections=2" in error["message"]
    assert "upstream_pool_exhausted" in gateway.log
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'tokone_upstream_failures_total{provider="small",reason="pool_exhausted"} 1.0' in metrics
