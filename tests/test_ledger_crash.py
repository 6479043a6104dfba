"""A gateway killed with SIGKILL under load: the ledger stays consistent and the lease its
in-flight calls were held against is released once it is older than `hold_timeout_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import httpx
from conftest import price, provider, wait_until
from ledger_checks import assert_ledger_consistent, database_url, read_ledger, with_billing

FAKE_PROVIDER = provider("fake", "{base_url}/v1", models=("fake-model",))
FAKE_PROVIDER += price("fake-model", 1.0, 2.0)
IN_FLIGHT = 30
BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}
FAKE_COST = 1 * 1 + 16 * 2  # "hi" = 1 input token, 16 output tokens (the fake's reply)


async def burst(url: str, key: str) -> None:
    """Open IN_FLIGHT slow streams; they break when the gateway is killed."""
    async with httpx.AsyncClient(timeout=30) as client:

        async def one() -> None:
            with contextlib.suppress(httpx.HTTPError):
                async with client.stream(
                    "POST",
                    url + "/v1/chat/completions",
                    json={**BODY, "stream": True},
                    headers={"authorization": f"Bearer {key}"},
                ) as response:
                    async for _ in response.aiter_bytes():
                        pass

        await asyncio.gather(*(one() for _ in range(IN_FLIGHT)))


def test_kill_9_under_load_leaves_a_consistent_ledger_and_releases_holds(
    make_gateway, make_fake_upstream
):
    upstream = make_fake_upstream()
    gateway = make_gateway(FAKE_PROVIDER.format(base_url=upstream.base_url), start=False)
    with_billing(gateway, "hold_timeout_seconds = 2").start()
    url = database_url(gateway)
    key = gateway.funded_key("crash", "1")
    client = httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {key}"})
    completed = [client.post("/v1/chat/completions", json=BODY) for _ in range(5)]
    assert [r.status_code for r in completed] == [200] * 5
    wait_until(lambda: len(read_ledger(url, "crash").usage) == 5, 10, "the first calls' records")

    upstream.delay_chunks(0.25)  # 16 chunks: each stream takes 4 s
    loader = threading.Thread(target=asyncio.run, args=(burst(gateway.url, key),))
    loader.start()
    wait_until(lambda: len(upstream.requests) == 5 + IN_FLIGHT, 10, "the streams to start")
    gateway.stop(kill=True)
    loader.join(30)

    crashed = read_ledger(url, "crash")
    assert crashed.open_holds == 1 and crashed.held > 0  # the process's lease, left behind
    assert_ledger_consistent(url, "crash")  # money moved consistently up to the crash

    upstream.delay_chunks(0)
    gateway.start()
    released = wait_until(
        lambda: (s := read_ledger(url, "crash")).open_holds == 0 and s, 10, "stale holds release"
    )
    assert released.held == 0
    state = assert_ledger_consistent(url, "crash")
    # the killed streams delivered nothing the ledger knows of: only the 5 calls are charged
    assert state.balance == 1_000_000 - 5 * FAKE_COST
    assert "OK" in gateway.cli("accounts", "check", "crash")

    after = client.post("/v1/chat/completions", json=BODY)
    assert after.status_code == 200
    wait_until(lambda: len(read_ledger(url, "crash").captures) == 6, 10, "the new call's charge")
    assert assert_ledger_consistent(url, "crash").balance == 1_000_000 - 6 * FAKE_COST
