"""Usage reports (`tokone usage`), and what users see with their own key: balance, usage
and prices.
"""

from __future__ import annotations

import json

import httpx
import pytest
from ledger_checks import database_url, usage_record, wait_settled
from tokone.providers.mock_words import WORDS

MESSAGES = [{"role": "user", "content": "say hello to me"}]
BASE = 4 * 1 + len(WORDS) * 2
EMBED_COST = 2 * 1  # "two words" = 2 input tokens at 1.0, no output


@pytest.fixture
def gateway(make_gateway):
    return make_gateway()


def calls(gateway, key: str, chats: int, embeddings: int = 0) -> None:
    sdk = gateway.openai_client(key)
    for _ in range(chats):
        sdk.chat.completions.create(model="mock-1", messages=MESSAGES)
    for _ in range(embeddings):
        sdk.embeddings.create(model="mock-1", input="two words")


def test_usage_report_filters_and_totals(gateway):
    first = gateway.funded_key("ann", "1")
    second = gateway.funded_key("ann", "")
    other = gateway.funded_key("ben", "1")
    calls(gateway, first, 2, embeddings=1)
    calls(gateway, second, 1)
    calls(gateway, other, 3)
    url = database_url(gateway)
    wait_settled(url, "ann", 4)
    wait_settled(url, "ben", 3)

    everything = json.loads(gateway.cli("usage", "--json"))
    assert everything["totals"]["requests"] == 7
    assert everything["totals"]["cost_micro"] == 6 * BASE + EMBED_COST
    ann = json.loads(gateway.cli("usage", "--account", "ann", "--json"))
    assert ann["totals"]["requests"] == 4 and ann["totals"]["cost_micro"] == 3 * BASE + EMBED_COST
    key_ids = sorted({line["key_id"] for line in ann["lines"]})
    by_key = json.loads(gateway.cli("usage", "--key", str(key_ids[0]), "--json"))
    assert by_key["totals"]["requests"] == 3
    assert by_key["totals"]["output_tokens"] == 2 * len(WORDS)

    assert json.loads(gateway.cli("usage", "--days", "1", "--json"))["totals"]["requests"] == 7
    future = json.loads(gateway.cli("usage", "--since", "2999-01-01", "--json"))
    assert future["totals"]["requests"] == 0 and future["lines"] == []
    past = json.loads(gateway.cli("usage", "--until", "2000-01-01T00:00:00Z", "--json"))
    assert past["totals"]["requests"] == 0

    table = gateway.cli("usage", "--model", "mock-1")
    assert table.splitlines()[0].split()[:3] == ["ACCOUNT", "KEY", "MODEL"]
    total = table.splitlines()[-1].split()
    assert total[0] == "TOTAL" and total[1] == "7"
    with pytest.raises(AssertionError, match="not a date"):
        gateway.cli("usage", "--since", "last tuesday")


def test_usage_records_say_whether_the_call_was_streamed(gateway):
    key = gateway.funded_key("sam", "1")
    sdk = gateway.openai_client(key)
    whole = sdk.chat.completions.with_raw_response.create(model="mock-1", messages=MESSAGES)
    with sdk.chat.completions.with_streaming_response.create(
        model="mock-1", messages=MESSAGES, stream=True
    ) as streamed:
        assert "".join(streamed.iter_lines()).count("data:") > 1  # really an SSE stream
    with sdk.responses.connect() as connection:  # a WebSocket Responses turn is streamed
        connection.response.create(model="mock-1", input="say hello to me")
        while connection.recv().type != "response.completed":
            pass

    # (SQLite gives the flag back as 0 / 1, PostgreSQL as False / True: both compare equal)
    assert usage_record(gateway, whole.headers["x-request-id"])["stream"] == 0
    assert usage_record(gateway, streamed.headers["x-request-id"])["stream"] == 1
    state = wait_settled(database_url(gateway), "sam", 3)
    [turn] = set(state.usage) - {whole.headers["x-request-id"], streamed.headers["x-request-id"]}
    record = usage_record(gateway, turn)
    assert (record["endpoint"], record["stream"]) == ("responses", 1)


def test_users_see_their_own_balance_usage_and_prices(gateway):
    gateway.cli("accounts", "create", "vic", "--group", "vip")
    key = gateway.funded_key("vic", "1")
    other = gateway.funded_key("stranger", "1")
    calls(gateway, key, 2)
    calls(gateway, other, 1)
    wait_settled(database_url(gateway), "vic", 2)
    headers = {"authorization": f"Bearer {key}"}

    balance = httpx.get(gateway.url + "/v1/dashboard/balance", headers=headers).json()
    assert balance == {
        "account": "vic",
        "group": "vip",
        "multiplier": 0.5,
        "balance": "0.999972",
        "balance_micro": 1_000_000 - BASE,
        "held_micro": 0,
        "available": "0.999972",
        "available_micro": 1_000_000 - BASE,
    }
    usage = httpx.get(
        gateway.url + "/v1/dashboard/usage", headers=headers, params={"days": 7}
    ).json()
    assert usage["totals"]["requests"] == 2 and usage["totals"]["cost_micro"] == BASE
    assert {line["account"] for line in usage["lines"]} == {"vic"}  # never another account's
    bad = httpx.get(gateway.url + "/v1/dashboard/usage", headers=headers, params={"since": "soon"})
    assert bad.status_code == 400

    prices = httpx.get(gateway.url + "/pricing", headers=headers).json()
    assert prices["group"] == "vip" and prices["multiplier"] == 0.5
    by_model = {m["model"]: m for m in prices["models"]}
    assert by_model["mock-1"] == {
        "model": "mock-1",
        "input": "0.5",
        "output": "1",
        "cached_input": "0.5",
        "per_request": "0",
    }
    assert by_model["gpt-4o-mini"]["cached_input"] == "0.0375"  # 0.075 x 0.5, exactly
    assert prices["service_tiers"]["priority"] == 2.0

    for path in ("/v1/dashboard/balance", "/v1/dashboard/usage", "/pricing"):
        response = httpx.get(gateway.url + path)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
