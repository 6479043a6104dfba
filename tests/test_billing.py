"""Exact billing end to end: group multipliers from the config and the database, per-account
overrides, service tiers, per-request prices, a second pricing policy as a plugin, 402 in
each family's shape, and what failed or cut calls cost.
"""

from __future__ import annotations

import json
import math
import time

import anthropic
import httpx
import openai
import pytest
from conftest import (
    FAST_REFRESH,
    MOCK_PROVIDER,
    TEST_PLUGINS,
    importable,
    price,
    provider,
    wait_until,
)
from google.genai import errors as genai_errors
from ledger_checks import (
    assert_ledger_consistent,
    database_url,
    read_ledger,
    usage_record,
    wait_settled,
    with_billing,
)
from tokone.providers.mock_words import WORDS

MESSAGES = [{"role": "user", "content": "say hello to me"}]
BASE = 4 * 1 + len(WORDS) * 2  # mock-1: 4 input tokens at 1.0 + 12 output tokens at 2.0
EXTRA_MOCK = """
[[providers]]
name = "mock-per-request"
adapter = "mock"
models = ["mock-req"]

[prices."mock-req"]
input = 1.0
output = 2.0
per_request = 0.001
"""
FAKE_PROVIDER = provider(
    "fake",
    "{base}/v1",
    models=("fake-model",),
    extra="timeouts = {{ connect = 2, first_byte = 0.5, idle = 2 }}",
) + price("fake-model", 10.0, 1000.0)
UNPRICED = provider("more", "", models=("mock-2",), adapter="mock")
PROVIDERS = MOCK_PROVIDER + EXTRA_MOCK + FAKE_PROVIDER + UNPRICED + FAST_REFRESH
"""One gateway for the module (conftest's `gateway`, on the fake upstream of 16-piece
replies); every test uses accounts of its own. Tests that need another config start theirs."""
N = 16


def charged(gateway, account: str, request_id: str) -> tuple[int, int]:
    """(status, cost) of a call's usage record, once written; the capture must agree."""
    url = database_url(gateway)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = read_ledger(url, account)
        if request_id in state.usage and state.held == 0:
            status, cost = state.usage[request_id]
            assert state.captures.get(request_id, 0) == cost
            return status, cost
        time.sleep(0.05)
    raise AssertionError(f"no usage record for {request_id}")


def chat_cost(gateway, key: str, account: str, **kwargs) -> int:
    reply = gateway.openai_client(key).chat.completions.with_raw_response.create(
        model=kwargs.pop("model", "mock-1"), messages=MESSAGES, **kwargs
    )
    return charged(gateway, account, reply.headers["x-request-id"])[1]


def mock_input_price(gateway, key: str) -> str:
    """mock-1's input price per million tokens for `key` (1.0 x its multiplier), by /pricing."""
    listed = httpx.get(gateway.url + "/pricing", headers={"authorization": f"Bearer {key}"})
    return next(m["input"] for m in listed.json()["models"] if m["model"] == "mock-1")


def test_group_multipliers_come_from_config_and_database_and_overrides_win(gateway):
    gateway.cli("groups", "create", "gold", "0.25")
    listed = gateway.cli("groups", "list")
    assert "gold" in listed and "database" in listed and "vip" in listed
    gateway.cli("accounts", "create", "goldie", "--group", "gold")
    gateway.cli("accounts", "create", "vera", "--group", "vip")
    gold_key = gateway.funded_key("goldie", "1")
    vip_key = gateway.funded_key("vera", "1")
    wait_until(lambda: mock_input_price(gateway, gold_key) == "0.25")  # groups re-read

    assert chat_cost(gateway, gold_key, "goldie") == 7  # 28 x 0.25
    assert chat_cost(gateway, vip_key, "vera") == 14  # 28 x 0.5 from tokone.toml

    gateway.cli("groups", "set", "vip", "0.2")  # the database wins over tokone.toml
    wait_until(lambda: mock_input_price(gateway, vip_key) == "0.2")
    assert chat_cost(gateway, vip_key, "vera") == 6  # 5.6 rounded half up

    gateway.cli("accounts", "override", "goldie", "0.1")
    wait_until(lambda: mock_input_price(gateway, gold_key) == "0.1")
    assert chat_cost(gateway, gold_key, "goldie") == 3  # 2.8: the account's own multiplier
    gateway.cli("accounts", "override", "goldie", "--clear")
    wait_until(lambda: mock_input_price(gateway, gold_key) == "0.25")
    assert chat_cost(gateway, gold_key, "goldie") == 7
    with pytest.raises(AssertionError, match="unknown group"):
        gateway.cli("accounts", "create", "nobody", "--group", "platinum")
    for account in ("goldie", "vera"):
        assert_ledger_consistent(database_url(gateway), account)


def test_service_tier_reported_by_upstream_and_per_request_prices(gateway):
    key = gateway.funded_key("tiers", "1")
    assert chat_cost(gateway, key, "tiers", service_tier="flex") == BASE // 2
    assert chat_cost(gateway, key, "tiers", service_tier="priority") == BASE * 2
    assert chat_cost(gateway, key, "tiers") == BASE
    assert chat_cost(gateway, key, "tiers", model="mock-req") == BASE + 1000


def test_a_pricing_plugin_changes_what_is_recorded(make_gateway, monkeypatch):
    importable(monkeypatch, TEST_PLUGINS)
    gateway = make_gateway('[plugins]\nmodules = ["min_charge"]\n')
    key = gateway.funded_key("minimum", "1")
    assert chat_cost(gateway, key, "minimum") == 5000  # instead of 28
    state = assert_ledger_consistent(database_url(gateway), "minimum")
    assert state.balance == 1_000_000 - 5000


def test_no_balance_is_402_in_every_family_shape(gateway):
    key = gateway.funded_key("empty", "")

    with pytest.raises(openai.APIStatusError) as oai:
        gateway.openai_client(key).chat.completions.create(model="mock-1", messages=MESSAGES)
    assert oai.value.status_code == 402
    assert oai.value.body["code"] == "insufficient_quota"
    assert oai.value.response.headers["x-should-retry"] == "false"

    claude = gateway.anthropic_client(key)
    with pytest.raises(anthropic.APIStatusError) as ant:
        claude.messages.create(model="mock-1", max_tokens=100, messages=MESSAGES)
    assert ant.value.status_code == 402
    assert ant.value.body == {
        "type": "error",
        "error": {"type": "billing_error", "message": ant.value.body["error"]["message"]},
    }
    assert ant.value.response.headers["x-should-retry"] == "false"

    gemini = gateway.gemini_client(key)
    with pytest.raises(genai_errors.ClientError) as gem:
        gemini.models.generate_content(model="mock-1", contents="say hello to me")
    assert gem.value.code == 402 and gem.value.status == "RESOURCE_EXHAUSTED"
    raw = httpx.post(
        gateway.url + "/v1beta/models/mock-1:generateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert raw.status_code == 402 and raw.headers["x-should-retry"] == "false"

    state = read_ledger(database_url(gateway), "empty")
    assert state.balance == 0 and state.captures == {} and state.held == 0


@pytest.mark.usefixtures("reset_upstream")
def test_a_cut_stream_is_charged_for_what_was_delivered(gateway, upstream):
    key = gateway.funded_key("cut", "10")
    upstream.cut_stream_after(4)
    received = ""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(openai.APIError):
        chats = gateway.openai_client(key).chat.completions
        stream = chats.with_raw_response.create(**body, stream=True)
        request_id = stream.headers["x-request-id"]
        for chunk in stream.parse():
            received += "".join(c.delta.content or "" for c in chunk.choices)
    assert received == "Hello from fake-model! tok"  # 4 of 16 pieces, then the cut
    status, cost = charged(gateway, "cut", request_id)
    assert status == 502
    record = usage_record(gateway, request_id)
    # no usage from upstream: the gateway counts 4 characters per token, both ways
    assert record["estimated"] and record["output_tokens"] == math.ceil(len(received) / 4)
    assert 0 < record["input_tokens"] <= len(json.dumps({**body, "stream": True})) / 4 + 1
    assert cost == record["input_tokens"] * 10 + record["output_tokens"] * 1000
    assert cost < 1 * 10 + 16 * 1000  # less than the whole answer would have cost
    assert read_ledger(database_url(gateway), "cut").balance == 10_000_000 - cost
    assert_ledger_consistent(database_url(gateway), "cut")


@pytest.mark.usefixtures("reset_upstream")
def test_upstream_failure_or_timeout_without_output_costs_nothing(gateway, upstream):
    key = gateway.funded_key("unlucky", "10")
    client = gateway.openai_client(key)
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}

    upstream.fail_with(500)
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(**body)
    assert failed.value.status_code == 502
    upstream.hang(2)
    with pytest.raises(openai.InternalServerError) as slow:
        client.chat.completions.create(**body, stream=True)
    assert slow.value.status_code == 504

    url = database_url(gateway)
    state = wait_settled(url, "unlucky", 2)
    assert sorted(status for status, _ in state.usage.values()) == [502, 504]
    assert state.captures == {} and state.usage_cost == 0
    assert state.balance == 10_000_000 and state.held == 0 and state.open_holds == 0
    assert_ledger_consistent(url, "unlucky")


def test_embeddings_hold_only_their_prompt(gateway):
    key = gateway.funded_key("small", "0.0001")  # 100 micro-units: no room for 1000 output
    client = gateway.openai_client(key)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="mock-1", messages=MESSAGES)
    assert refused.value.status_code == 402
    embedded = client.embeddings.with_raw_response.create(model="mock-1", input="two words")
    assert charged(gateway, "small", embedded.headers["x-request-id"]) == (200, 2)


def test_a_model_without_a_price_is_refused_not_given_away(gateway, make_gateway):
    client = gateway.openai_client(gateway.funded_key("priced", "1"))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="mock-2", messages=MESSAGES)
    assert 'add [prices."mock-2"]' in refused.value.message
    assert refused.value.response.headers["x-should-retry"] == "false"
    client.chat.completions.create(model="mock-1", messages=MESSAGES)  # priced: served

    free = with_billing(make_gateway(UNPRICED, start=False), "allow_unpriced = true").start()
    reply = free.openai_client(free.funded_key("anyone", "")).chat.completions.create(
        model="mock-2", messages=MESSAGES
    )
    assert reply.choices[0].message.content
