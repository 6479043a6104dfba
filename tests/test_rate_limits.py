"""Rate limits end to end: requests and tokens per minute, per-key overrides, concurrency,
and limits that hold across three gateway processes sharing the local Redis."""

from __future__ import annotations

import re
import secrets
import threading
import time

import anthropic
import openai
import pytest
import redis
from conftest import HELLO, REDIS_URL, free_port, provider

RESET = re.compile(r"^(\d+ms|(\d+m)?\d+(\.\d+)?s)$")


def ask(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="mock-1", messages=HELLO)


def count_until_refused(
    client: openai.OpenAI, limit: int = 20, pause: float = 0.0
) -> tuple[int, openai.RateLimitError]:
    """Send calls until one is refused; return how many passed and the refusal."""
    for passed in range(limit):
        try:
            ask(client)
        except openai.RateLimitError as refusal:
            return passed, refusal
        time.sleep(pause)
    raise AssertionError(f"{limit} calls passed without a 429")


def key_ids(gateway) -> dict[str, int]:
    """Key name -> id, from `tokone keys list`."""
    rows = [line.split() for line in gateway.cli("keys", "list").splitlines()[1:]]
    return {row[-1]: int(row[0]) for row in rows}


def test_requests_per_minute_refuse_with_retry_after_and_openai_headers(make_gateway):
    gateway = make_gateway("[rate_limits]\nrpm = 2\n")
    key = gateway.funded_key()
    passed, refusal = count_until_refused(gateway.openai_client(key))
    assert passed == 2
    assert refusal.status_code == 429
    assert refusal.body["type"] == "rate_limit_error"
    assert refusal.body["code"] == "rate_limit_exceeded"
    assert "requests per min" in refusal.body["message"]
    headers = refusal.response.headers
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert RESET.match(headers["x-ratelimit-reset-requests"])

    # the same refusal in Anthropic's shape for the Messages API
    claude = gateway.anthropic_client(key)
    with pytest.raises(anthropic.RateLimitError) as info:
        claude.messages.create(model="mock-1", max_tokens=10, messages=HELLO)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.response.headers["x-ratelimit-limit-requests"] == "2"


def test_successful_calls_carry_the_rate_limit_state_too(make_gateway):
    gateway = make_gateway("[rate_limits]\nrpm = 5\ntpm = 1000\n")
    client = gateway.openai_client(gateway.funded_key())
    remaining = []
    for _ in range(2):
        reply = client.chat.completions.with_raw_response.create(model="mock-1", messages=HELLO)
        headers = reply.headers
        assert headers["x-ratelimit-limit-requests"] == "5"
        assert headers["x-ratelimit-limit-tokens"] == "1000"
        assert RESET.match(headers["x-ratelimit-reset-requests"])
        remaining.append(int(headers["x-ratelimit-remaining-requests"]))
    assert remaining == [4, 3]
    with client.chat.completions.with_streaming_response.create(
        model="mock-1", messages=HELLO, stream=True
    ) as streamed:
        assert streamed.headers["x-ratelimit-remaining-requests"] == "2"


def test_group_defaults_and_per_key_overrides(make_gateway):
    gateway = make_gateway(start=False)
    plain = gateway.funded_key("demo", "10", "--name", "plain")
    slow = gateway.funded_key("demo", "", "--name", "slow")
    gateway.cli("accounts", "create", "big", "--group", "vip")
    vip = gateway.funded_key("big", "10", "--name", "vip")
    ids = key_ids(gateway)
    with gateway.config_path.open("a") as config:
        config.write(
            "\n[rate_limits]\nrpm = 3\n"
            "[rate_limits.groups.vip]\nrpm = 5\n"
            f'[rate_limits.keys."{ids["slow"]}"]\nrpm = 1\n'
        )
    gateway.start()
    assert count_until_refused(gateway.openai_client(plain))[0] == 3
    passed, refusal = count_until_refused(gateway.openai_client(slow))
    assert passed == 1 and refusal.response.headers["x-ratelimit-limit-requests"] == "1"
    assert count_until_refused(gateway.openai_client(vip))[0] == 5


def test_tokens_per_minute_count_what_calls_used(make_gateway):
    # the mock answers 12 output tokens; "hello there" is 2 input tokens: 14 per call
    gateway = make_gateway("[rate_limits]\ntpm = 30\naccount_rpm = 100\n")
    passed, refusal = count_until_refused(gateway.openai_client(gateway.funded_key()), pause=0.1)
    assert passed == 3  # 0, 14, 28 tokens used before each: all under 30; then 42
    headers = refusal.response.headers
    assert "tokens per min" in refusal.body["message"]
    assert headers["x-ratelimit-limit-tokens"] == "30"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert RESET.match(headers["x-ratelimit-reset-tokens"])
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "97"


def test_concurrent_requests_per_key(make_gateway, make_fake_upstream):
    upstream = make_fake_upstream()
    gateway = make_gateway(
        "[rate_limits]\nmax_concurrent = 1\n" + provider("up", upstream.base_url + "/v1"),
        mock=False,
    )
    client = gateway.openai_client(gateway.funded_key())
    upstream.stall_stream_after(2, 1.5)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=HELLO, stream=True)
    text: list[str] = []
    reader = threading.Thread(
        target=lambda: text.extend(c.choices[0].delta.content or "" for c in stream if c.choices)
    )
    reader.start()
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert "concurrent" in info.value.body["message"]
    assert info.value.response.headers["retry-after"] == "1"
    reader.join(10)
    assert "".join(text).startswith("Hello from gpt-4o-mini!")
    # the slot is given back once the stream is metered
    deadline = time.monotonic() + 3
    while True:
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=HELLO)
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "the concurrency slot was never released"
            time.sleep(0.05)
    assert len(upstream.requests) == 2


@pytest.fixture
def redis_prefix():
    """A key prefix unique to this test; only its keys are deleted afterwards."""
    prefix = f"tokone-test-{secrets.token_hex(6)}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_limits_hold_across_three_processes_sharing_redis(make_gateway, redis_prefix):
    limits = (
        f'[rate_limits]\nstorage = "{REDIS_URL}"\nkey_prefix = "{redis_prefix}"\nrpm = 5\n'
        '[rate_limits.keys."2"]\nrpm = 0\ntpm = 30\n'  # key 2: no request limit, 30 tokens
    )
    first = make_gateway(limits, start=False)
    by_requests = first.funded_key("demo", "10", "--name", "requests")
    by_tokens = first.funded_key("demo", "", "--name", "tokens")
    assert key_ids(first) == {"requests": 1, "tokens": 2}
    gateways = [first.start(), make_gateway(limits), make_gateway(limits)]

    outcomes = []
    for i in range(9):
        try:
            ask(gateways[i % 3].openai_client(by_requests))
            outcomes.append(200)
        except openai.RateLimitError:
            outcomes.append(429)
    assert outcomes.count(200) == 5 and outcomes.count(429) == 4
    assert outcomes[:5] == [200] * 5

    passed = 0
    for i in range(6):
        try:
            ask(gateways[i % 3].openai_client(by_tokens))
            passed += 1
        except openai.RateLimitError as refusal:
            assert refusal.response.headers["x-ratelimit-limit-tokens"] == "30"
            break
        time.sleep(0.1)
    assert passed == 3

    stored = redis.Redis.from_url(REDIS_URL)
    assert list(stored.scan_iter(match=f"{redis_prefix}:*"))
    stored.close()


def test_an_unreachable_storage_admits_calls_and_says_so(make_gateway):
    gateway = make_gateway(
        f'[rate_limits]\nstorage = "redis://127.0.0.1:{free_port()}/0"\n'
        "rpm = 1\nmax_concurrent = 1\n"
    )
    client = gateway.openai_client(gateway.funded_key())
    ask(client)
    ask(client)
    assert "rate_limit_storage_failed" in gateway.log
