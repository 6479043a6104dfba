"""Ledger invariants on SQLite, against a running gateway (the mock provider).

(a) balance = top-ups + refunds + adjustments - captures, and the sum of the captures equals
    the sum of the usage records' costs, call by call;
(b) hundreds of concurrent calls on one account whose balance covers only some of them: each
    admitted call is charged exactly once, the rest get 402, the balance never goes below
    zero (the tolerance is 0 here: every mock call costs less than its hold, see the ledger
    module), no hold is left behind, and `tokone accounts check` agrees.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest
from conftest import MOCK_PROVIDER
from ledger_checks import CHAT, assert_ledger_consistent, database_url, fire, wait_settled
from tokone.providers.mock_words import WORDS

MOCK_COST = 1 * 1 + len(WORDS) * 2  # "hi" = 1 input token at 1.0, 12 output tokens at 2.0
PROVIDERS = MOCK_PROVIDER
"""One gateway for the module (conftest's `gateway`); every test uses an account of its own."""


def test_balance_is_topups_plus_refunds_and_adjustments_minus_captures(gateway):
    url = database_url(gateway)
    key = gateway.funded_key("inv", "1")
    sdk = gateway.openai_client(key)
    messages = [{"role": "user", "content": "hi"}]
    first = sdk.chat.completions.with_raw_response.create(model="mock-1", messages=messages)
    list(sdk.chat.completions.create(model="mock-1", messages=messages, stream=True))
    sdk.completions.create(model="mock-1", prompt="hi there")
    with pytest.raises(openai.NotFoundError):  # refused before admission: no record at all
        sdk.chat.completions.create(model="no-such-model", messages=messages)
    gateway.cli("accounts", "topup", "inv", "0.5")
    gateway.cli("accounts", "adjust", "--note", "goodwill reversed", "inv", "--", "-0.25")
    request_id = first.headers["x-request-id"]
    state = wait_settled(url, "inv", 3)
    gateway.cli("accounts", "refund", "inv", "0.000025", "--request", request_id)
    with pytest.raises(AssertionError, match="already refunded"):
        gateway.cli("accounts", "refund", "inv", "0.000001", "--request", request_id)

    state = assert_ledger_consistent(url, "inv")
    completion_cost = 2 * 1 + len(WORDS) * 2  # "hi there" = 2 input tokens
    assert state.entries == {
        "topup": 1_500_000,
        "adjustment": -250_000,
        "refund": MOCK_COST,
        "capture": -(2 * MOCK_COST + completion_cost),
    }
    assert state.balance == 1_250_000 - MOCK_COST - completion_cost
    assert state.captures[request_id] == MOCK_COST
    assert "OK" in gateway.cli("accounts", "check", "inv")


def test_concurrent_calls_on_a_small_balance_are_charged_once_or_refused(gateway):
    url = database_url(gateway)
    key = gateway.funded_key("busy", "0.002")  # 2000 micro-units: 80 calls at most
    results = asyncio.run(fire([gateway.url], key, 300))

    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 402}, statuses
    admitted = {rid for status, rid in results if status == 200}
    refused = {rid for status, rid in results if status == 402}
    assert admitted and refused and len(admitted) + len(refused) == 300
    state = wait_settled(url, "busy", 300)
    state = assert_ledger_consistent(url, "busy")

    assert set(state.captures) == admitted  # every admitted call charged, exactly once
    assert all(amount == MOCK_COST for amount in state.captures.values())
    assert all(state.usage[rid] == (402, 0) for rid in refused)
    assert state.balance == 2000 - MOCK_COST * len(admitted) >= 0
    assert state.open_holds == 0 and state.held == 0
    assert "OK" in gateway.cli("accounts", "check", "busy")


def test_refused_call_is_402_in_openai_shape_and_not_retried(gateway):
    key = gateway.funded_key("broke", "")
    sdk = gateway.openai_client(key)
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(**CHAT)
    error = info.value
    assert error.status_code == 402
    assert error.response.headers["x-should-retry"] == "false"
    assert error.body["type"] == "insufficient_quota"
    assert error.body["code"] == "insufficient_quota"
    streamed = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={**CHAT, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    )
    assert streamed.status_code == 402
    assert json.loads(streamed.text)["error"]["type"] == "insufficient_quota"
