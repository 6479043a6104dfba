"""Failover and channel health end to end, with the official openai SDK (max_retries=0).

A failure before the first byte is invisible to the client (the next channel answers, the
call is billed once); a failure after it is a stream error, never a silent retry. Channels
that keep failing cool down and come back through a single probe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import free_port, wait_until
from test_routing import ADMIN, HELLO, provider, sdk
from tokone.core import health as health_module
from tokone.plugins.health import Breaker, BreakerState

FAST_TIMEOUTS = "timeouts = { connect = 1.0, first_byte = 0.5, idle = 1.0 }"


def stream_text(client: openai.OpenAI) -> str:
    chunks = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def usage_after(gateway, requests: int) -> dict:
    """The demo account once `requests` usage records are written and no hold is open."""
    deadline = time.monotonic() + 5
    while True:
        data = json.loads(gateway.cli("accounts", "show", "demo", "--json"))
        if data["usage"]["requests"] >= requests and data["held_micro"] == 0:
            return data
        if time.monotonic() > deadline:
            raise AssertionError(f"usage not recorded: {data}")
        time.sleep(0.05)


def channel(gateway, name: str) -> dict:
    rows = httpx.get(gateway.url + "/admin/providers", headers=ADMIN).json()["data"]
    return next(r for r in rows if r["name"] == name)


@pytest.mark.parametrize("failure", ["500", "refused", "429", "hang", "401"])
def test_failure_before_the_first_byte_is_invisible_and_billed_once(
    failure, make_gateway, make_fake_upstream
):
    primary, secondary = make_fake_upstream(), make_fake_upstream()
    primary_url = primary.base_url + "/v1"
    if failure == "refused":
        primary_url = f"http://127.0.0.1:{free_port()}/v1"
    gateway = make_gateway(
        provider("primary", primary_url, priority=10, extra=FAST_TIMEOUTS)
        + provider("secondary", secondary.base_url + "/v1"),
        mock=False,
    )
    {
        "500": lambda: primary.fail_with(500),
        "refused": lambda: None,
        "429": lambda: primary.fail_with(429, retry_after=30),
        "hang": lambda: primary.hang(3),
        "401": lambda: primary.fail_with(401),  # the channel's own key refused
    }[failure]()
    client = sdk(gateway, gateway.funded_key())

    assert stream_text(client).startswith("Hello from gpt-4o-mini!")
    assert len(secondary.requests) == 1
    assert len(primary.requests) == (0 if failure == "refused" else 1)
    data = usage_after(gateway, 1)
    assert data["usage"]["requests"] == 1
    assert data["usage"]["output_tokens"] == 16
    assert data["balance_micro"] == 10_000_000 - data["usage"]["cost_micro"] > 0
    row = channel(gateway, "primary")
    assert row["recent_failures"] == 1 and row["state"] == "healthy"

    # a plain (non-streamed) call fails over the same way
    if failure == "500":
        primary.fail_with(503)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert reply.choices[0].message.content.startswith("Hello from gpt-4o-mini!")
        assert (len(primary.requests), len(secondary.requests)) == (2, 2)
        assert usage_after(gateway, 2)["usage"]["requests"] == 2
    # retry-after: the primary is passed over until it has passed
    if failure == "429":
        assert row["retry_after_until"] > time.time() + 25
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert (len(primary.requests), len(secondary.requests)) == (1, 2)
        # ...unless nothing else is left
        secondary.fail_with(500)
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        assert (len(primary.requests), len(secondary.requests)) == (2, 3)


def test_a_cut_after_the_first_byte_is_a_stream_error_not_a_retry(make_gateway, make_fake_upstream):
    primary, secondary = make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        provider("primary", primary.base_url + "/v1", priority=10)
        + provider("secondary", secondary.base_url + "/v1"),
        mock=False,
    )
    primary.cut_stream_after(3)
    client = sdk(gateway, gateway.funded_key())
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, stream=True
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "Hello from gpt-4o-mini!"
    assert "Stream failed" in info.value.message
    assert secondary.requests == []
    data = usage_after(gateway, 1)  # charged for what was delivered, once
    assert data["usage"]["requests"] == 1 and data["usage"]["output_tokens"] > 0
    assert channel(gateway, "primary")["recent_failures"] == 1


def test_cooldown_after_repeated_failures_then_recovery_through_a_probe(
    make_gateway, make_fake_upstream
):
    primary, secondary = make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        "[routing]\nfailure_threshold = 2\ncooldown_seconds = 1.0\nmax_cooldown_seconds = 4.0\n"
        + provider("primary", primary.base_url + "/v1", priority=10)
        + provider("secondary", secondary.base_url + "/v1"),
        mock=False,
    )
    client = sdk(gateway, gateway.funded_key())

    def served() -> tuple[int, int]:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
        return len(primary.requests), len(secondary.requests)

    primary.fail_with(500, count=2)
    assert served() == (1, 1)
    assert channel(gateway, "primary")["state"] == "healthy"
    assert served() == (2, 2)  # second failure in a row: the breaker opens
    row = channel(gateway, "primary")
    assert row["state"] == "cooldown" and row["consecutive_failures"] == 2
    assert 0 < row["cooldown_until"] - time.time() <= 1.0
    assert "cooldown until" in gateway.cli("providers", "status", "--live", gateway.url)
    assert served() == (2, 3)  # skipped while cooling down

    # after the cooldown one probe goes through; it fails, so the next cooldown is doubled
    primary.fail_with(500)
    wait_until(lambda: channel(gateway, "primary")["state"] == "half_open")
    assert served() == (3, 4)
    assert 1.0 < channel(gateway, "primary")["cooldown_until"] - time.time() <= 2.0
    assert served() == (3, 5)

    # the next probe succeeds and closes the breaker
    wait_until(lambda: channel(gateway, "primary")["state"] == "half_open")
    assert served() == (4, 5)
    assert served() == (5, 5)
    row = channel(gateway, "primary")
    assert row["state"] == "healthy" and row["cooldown_until"] is None


def test_retry_budget_then_503_when_every_channel_cools_down(make_gateway, make_fake_upstream):
    ups = [make_fake_upstream() for _ in range(3)]
    gateway = make_gateway(
        "[routing]\nmax_attempts = 2\nfailure_threshold = 1\ncooldown_seconds = 30\n"
        + "".join(
            provider(f"up{i}", up.base_url + "/v1", priority=3 - i) for i, up in enumerate(ups)
        ),
        mock=False,
    )
    for up in ups:
        up.fail_with(500, count=5)
    client = sdk(gateway, gateway.funded_key())

    with pytest.raises(openai.InternalServerError) as first:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert first.value.status_code == 502  # two tried (the budget), both failed
    assert [len(up.requests) for up in ups] == [1, 1, 0]
    with pytest.raises(openai.InternalServerError) as second:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert second.value.status_code == 502  # the first two cool down; the third is tried
    assert [len(up.requests) for up in ups] == [1, 1, 1]

    with pytest.raises(openai.InternalServerError) as third:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert third.value.status_code == 503
    assert third.value.body["code"] == "no_healthy_upstream"
    assert 25 <= int(third.value.response.headers["retry-after"]) <= 30
    assert [len(up.requests) for up in ups] == [1, 1, 1]
    data = usage_after(gateway, 2)  # the 503 was refused before admission: nothing to record
    assert data["usage"]["requests"] == 2
    assert data["usage"]["cost_micro"] == 0 and data["balance_micro"] == 10_000_000


def test_without_the_health_plugin_every_channel_is_always_tried_and_switches_are_refused(
    make_gateway, make_fake_upstream
):
    """`[plugins] disable = ["health"]` turns channel health off as a whole, on purpose
    (README "Routing and rate limits", `tokone.core.health`): no breaker, no retry-after
    deferral, and no manual switches (refused, since nothing would obey them)."""
    primary, secondary = make_fake_upstream(), make_fake_upstream()
    gateway = make_gateway(
        '[plugins]\ndisable = ["health"]\n[routing]\nfailure_threshold = 1\n'
        + provider("primary", primary.base_url + "/v1", priority=10)
        + provider("secondary", secondary.base_url + "/v1"),
        mock=False,
    )
    primary.fail_with(429, count=3, retry_after=30)
    client = sdk(gateway, gateway.funded_key())
    for served in range(1, 4):  # with a breaker, one failure would have cooled it down
        assert client.chat.completions.create(model="gpt-4o-mini", messages=HELLO).choices
        assert (len(primary.requests), len(secondary.requests)) == (served, served)
    assert channel(gateway, "primary")["state"] == "unmonitored"

    refused = httpx.post(gateway.url + "/admin/providers/primary/disable", headers=ADMIN)
    assert refused.status_code == 409
    assert "health" in refused.json()["error"]["message"]
    with pytest.raises(AssertionError, match="manual channel switches are not obeyed"):
        gateway.cli("providers", "disable", "primary")
    client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert len(primary.requests) == 4  # still the first choice

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert 'disable = ["health"]' in readme
    assert "NoChannelHealth" in (health_module.__doc__ or "")


def test_breaker_state_machine():
    breaker = Breaker(threshold=2, cooldown=10.0, max_cooldown=25.0)
    assert breaker.acquire(0.0, lease=5) and not breaker.failure(0.0)
    assert breaker.failure(1.0) and breaker.state(1.0) is BreakerState.OPEN
    assert not breaker.allows(10.9) and not breaker.acquire(10.9, lease=5)
    assert breaker.wait(5.0) == 6.0
    assert breaker.state(11.0) is BreakerState.HALF_OPEN
    assert breaker.acquire(11.0, lease=5)  # the probe
    assert not breaker.acquire(12.0, lease=5) and breaker.wait(12.0) == 4.0  # one at a time
    assert breaker.acquire(16.0, lease=5)  # ...unless its verdict never came
    assert breaker.failure(16.5) and breaker.open_until == 36.5  # doubled
    assert not breaker.failure(20.0) and breaker.open_until == 36.5  # late news: no change
    assert breaker.acquire(37.0, lease=5) and breaker.failure(37.0)
    assert breaker.open_until == 62.0  # 40 capped at 25
    breaker.release()
    assert breaker.acquire(62.0, lease=5) and breaker.success()
    assert breaker.state(62.0) is BreakerState.CLOSED and breaker.failures == 0
    assert not breaker.failure(63.0)  # the count starts again from zero


@pytest.mark.parametrize(
    "timeouts",
    [
        "timeouts = { connect = 1.0, first_byte = 5.0, idle = 0.5 }",  # idle has its own timer
        "timeouts = { connect = 1.0, first_byte = 0.3, idle = 0.5 }",  # the read timeout bounds it
    ],
)
def test_a_stream_that_stalls_past_the_idle_timeout_ends_with_an_error(
    timeouts, make_gateway, make_fake_upstream
):
    upstream = make_fake_upstream()
    gateway = make_gateway(provider("slow", upstream.base_url + "/v1", extra=timeouts), mock=False)
    client = sdk(gateway, gateway.funded_key())
    upstream.stall_stream_after(3, 3.0)
    started = time.monotonic()
    with pytest.raises(openai.APIError, match="idle"):
        stream_text(client)
    assert time.monotonic() - started < 2.5  # cut at the idle timeout, not at the stall's end
    data = usage_after(gateway, 1)
    assert data["usage"]["output_tokens"] > 0  # what was delivered is charged
