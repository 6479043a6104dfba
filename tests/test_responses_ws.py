"""The Responses API over WebSocket: `client.responses.connect()` against a running gateway.

Turns go through the mock provider and, through the `openai` adapter, to the fake upstream;
each turn is one call of its own: recorded and charged separately.
"""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
import websockets
from conftest import (
    FAST_REFRESH,
    KEY_ACCOUNTS,
    MOCK_PROVIDER,
    Gateway,
    key_status,
    new_key,
    records,
    wait_until,
)
from fake_upstream import reply_pieces, reply_text
from tokone.providers.mock_words import REPLY, WORDS
from websockets.sync.client import connect as ws_connect

N = 16
pytestmark = pytest.mark.usefixtures("reset_upstream")
PROMPT = "one two three four five six seven"  # 7 input tokens at the fake upstream
TERMINAL = {"response.completed", "response.incomplete", "response.failed", "error"}
PROVIDER = """
[[providers]]
name = "upstream"
adapter = "openai"
base_url = "{base}/v1"
api_key = "upstream-secret"
models = ["gpt-4o-mini", "gpt-4o-cached"]

[prices."gpt-4o-cached"]
input = 1.0
output = 2.0
cached_input = 0.5
"""
PROVIDERS = MOCK_PROVIDER + PROVIDER + FAST_REFRESH


@pytest.fixture
def key(gateway: Gateway) -> str:
    """A key of a fresh account holding 10 units."""
    return new_key(gateway, prefix="ws")


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    """The official client pointed at the gateway, without retries."""
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def turn(connection: Any, **params: Any) -> list[Any]:
    """Send one `response.create` and read its events up to the terminal (or error) event."""
    connection.response.create(**params)
    events = []
    while True:
        events.append(connection.recv())
        if events[-1].type in TERMINAL:
            return events


def text_of(events: list[Any]) -> str:
    """The output text streamed in a turn's deltas."""
    return "".join(e.delta for e in events if e.type == "response.output_text.delta")


def test_two_turns_through_the_mock_are_recorded_and_charged_separately(gateway, key):
    with client(gateway, key).responses.connect() as connection:
        first = turn(connection, model="mock-1", input="say hello to me")
        second = turn(connection, model="mock-1", input="and once more please")
    for events in (first, second):
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        assert text_of(events) == REPLY
        assert events[-1].response.output_text == REPLY
        assert events[-1].response.usage.output_tokens == len(WORDS)

    rows = records(gateway, key, 2)
    assert len({r["request_id"] for r in rows}) == 2
    for row in rows:
        assert (row["endpoint"], row["model"], row["status"]) == ("responses", "mock-1", 200)
        assert (row["input_tokens"], row["output_tokens"]) == (4, len(WORDS))
        assert row["cost"] == 4 * 1 + len(WORDS) * 2  # mock-1: 1.0 in / 2.0 out per million
    assert rows[-1]["balance"] == 10_000_000 - 2 * rows[0]["cost"]


def test_turns_through_the_openai_adapter_reach_the_upstream_as_streamed_posts(
    gateway, upstream, key
):
    with client(gateway, key).responses.connect() as connection:
        first = turn(connection, model="gpt-4o-cached", input=PROMPT)
        second = turn(
            connection,
            model="gpt-4o-mini",
            input="two words",
            stream_id="lane-b",
            service_tier="flex",
        )
    assert text_of(first) == reply_text("gpt-4o-cached", N)
    assert first[-1].response.usage.input_tokens_details.cached_tokens == 3
    assert text_of(second) == reply_text("gpt-4o-mini", N)
    assert all(e.stream_id == "lane-b" for e in second)
    assert all(getattr(e, "stream_id", None) is None for e in first)

    sent = upstream.requests
    assert [(r.method, r.path) for r in sent] == [("POST", "/v1/responses")] * 2
    assert all(r.headers["authorization"] == "Bearer upstream-secret" for r in sent)
    assert all(key not in json.dumps(r.headers) for r in sent)
    assert sent[1].json == {
        "model": "gpt-4o-mini",
        "input": "two words",
        "service_tier": "flex",
        "stream": True,
    }

    first_row, second_row = records(gateway, key, 2)
    assert (first_row["input_tokens"], first_row["cached_input_tokens"]) == (7, 3)
    assert first_row["output_tokens"] == N and not first_row["estimated"]
    assert first_row["cost"] == 38  # 4 * 1.0 + 3 * 0.5 (cached) + 16 * 2.0 = 37.5, half up
    assert (second_row["model"], second_row["tier"]) == ("gpt-4o-mini", "flex")
    assert (second_row["input_tokens"], second_row["output_tokens"]) == (2, N)
    # gpt-4o-mini: 0.15 in / 0.60 out per million, flex halves it: (0.3 + 9.6) / 2 = 4.95 -> 5
    assert second_row["cost"] == 5
    assert second_row["balance"] == 10_000_000 - 38 - 5


def test_bad_key_and_key_in_query_refuse_the_handshake(gateway, key):
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        client(gateway, "sk-not-a-real-key").responses.connect().enter()
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["error"]["code"] == "invalid_api_key"
    assert info.value.response.headers["x-request-id"].startswith("req_")

    manager = client(gateway, key).responses.connect(extra_query={"api_key": key})
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        manager.enter()
    assert info.value.response.status_code == 400
    assert json.loads(info.value.response.body)["error"]["code"] == "api_key_in_query"
    assert key not in gateway.log


def test_failures_are_error_events_and_the_connection_carries_on(gateway, upstream, key):
    with client(gateway, key).responses.connect() as connection:
        upstream.cut_stream_after(3)
        cut = turn(connection, model="gpt-4o-mini", input=PROMPT, stream_id="s1")
        upstream.fail_with(500)
        refused = turn(connection, model="gpt-4o-mini", input=PROMPT)
        unknown = turn(connection, model="no-such-model", input=PROMPT)
        connection.send({"type": "response.cancel"})
        unsupported = connection.recv()
        after = turn(connection, model="gpt-4o-mini", input=PROMPT)

    assert [e.delta for e in cut if e.type == "response.output_text.delta"] == list(
        reply_pieces("gpt-4o-mini", N)[:3]
    )
    error = cut[-1]
    assert (error.type, error.status, error.stream_id) == ("error", 502, "s1")
    assert error.error.code == "upstream_error" and "Stream failed" in error.error.message
    assert [e.type for e in refused] == ["error"] and refused[0].status == 502
    assert (unknown[0].status, unknown[0].error.code) == (404, "model_not_found")
    assert (unsupported.type, unsupported.status, unsupported.error.param) == ("error", 400, "type")
    assert after[-1].type == "response.completed"
    assert text_of(after) == reply_text("gpt-4o-mini", N)

    rows = records(gateway, key, 3)  # the unknown model and the bad event never got admitted
    assert (rows[0]["status"], rows[0]["estimated"]) == (502, True)
    assert rows[0]["output_tokens"] == -(-len(text_of(cut)) // 4) and rows[0]["cost"] > 0
    assert (rows[1]["status"], rows[1]["cost"]) == (502, 0)
    assert (rows[2]["status"], rows[2]["estimated"]) == (200, False)
    assert rows[-1]["balance"] == 10_000_000 - rows[0]["cost"] - rows[2]["cost"]


def test_a_revoked_key_closes_the_connection_at_its_next_turn(gateway, key):
    with client(gateway, key).responses.connect() as connection:
        assert turn(connection, model="mock-1", input="hi")[-1].type == "response.completed"
        key_id = json.loads(gateway.cli("accounts", "show", KEY_ACCOUNTS[key], "--json"))["keys"][0]
        gateway.cli("keys", "revoke", str(key_id["id"]))
        wait_until(lambda: key_status(gateway, key) == 403)  # the key cache's refresh
        (refused,) = turn(connection, model="mock-1", input="hi")
        assert (refused.status, refused.error.type) == (403, "permission_error")
        with pytest.raises(websockets.exceptions.ConnectionClosed) as info:
            connection.recv()
    assert info.value.rcvd.code == 1008
    assert len(records(gateway, key, 1)) == 1


def test_client_leaving_mid_turn_is_charged_for_what_was_delivered(gateway, upstream, key):
    upstream.delay_chunks(0.05)
    connection = client(gateway, key).responses.connect().enter()
    connection.response.create(model="gpt-4o-mini", input=PROMPT)
    events = [connection.recv() for _ in range(8)]  # 4 preamble events and 4 deltas
    connection.close()
    assert text_of(events) == "".join(reply_pieces("gpt-4o-mini", N)[:4])

    (row,) = records(gateway, key, 1)  # metered once the gateway notices; the hold released
    assert (row["status"], row["estimated"]) == (499, True)
    assert row["output_tokens"] >= -(-len(text_of(events)) // 4) and row["cost"] > 0
    assert row["balance"] == 10_000_000 - row["cost"]


def test_a_binary_frame_is_a_turn_like_a_text_frame(gateway, key):
    url = gateway.url.replace("http", "ws") + "/v1/responses"
    event = {"type": "response.create", "model": "mock-1", "input": "hi"}
    with ws_connect(url, additional_headers={"authorization": f"Bearer {key}"}) as socket:
        socket.send(json.dumps(event).encode())
        frames = [json.loads(socket.recv())]
        while frames[-1]["type"] not in TERMINAL:
            frames.append(json.loads(socket.recv()))
        socket.send(b"")
        empty = json.loads(socket.recv())
    assert frames[-1]["type"] == "response.completed"
    assert "".join(f["delta"] for f in frames if f["type"].endswith("text.delta")) == REPLY
    assert (empty["type"], empty["status"]) == ("error", 400)
    assert len(records(gateway, key, 1)) == 1
