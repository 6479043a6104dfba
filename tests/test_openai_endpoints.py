"""Every OpenAI endpoint end to end through the `openai` adapter.

The official `openai` SDK talks to a running gateway, whose `openai` adapter talks to the fake
upstream (tests/fake_upstream/). Each test checks what the SDK sees, what the gateway
recorded in `usage_records` and charged, and what the upstream received (the gateway's own
upstream key, never the client's).
"""

from __future__ import annotations

import base64
import json
import struct
import tomllib
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import httpx
import openai
import pytest
import sqlalchemy
from conftest import Gateway, new_key, price, provider, records
from fake_upstream import FakeUpstream, reply_pieces, reply_text
from tokone.core.types import Call, Family
from tokone.providers.openai import ResponsesStreamRelay

N = 16
pytestmark = pytest.mark.usefixtures("reset_upstream")
PROMPT = "one two three four five six seven"  # 7 input tokens at the fake upstream
UPSTREAM_KEY = "upstream-secret"
PROVIDERS = (
    provider(
        "upstream",
        "{base}/v1",
        api_key=UPSTREAM_KEY,
        models=("gpt-4o-mini", "gpt-4o-cached", "text-embedding-3-small"),
        extra='model_map = {{"my-alias" = "gpt-4o-mini"}}',
    )
    + price("gpt-4o-cached", 1.0, 2.0, cached_input=0.5)
    + price("text-embedding-3-small", 1.0)
    + price("my-alias", 3.0, 4.0)
)
# per million tokens = micro-units per token: (input, cached input, output)
PRICES = {
    "gpt-4o-mini": (Fraction("0.15"), Fraction("0.075"), Fraction("0.60")),
    "gpt-4o-cached": (Fraction(1), Fraction(1, 2), Fraction(2)),
    "text-embedding-3-small": (Fraction(1), Fraction(1), Fraction(0)),
    "my-alias": (Fraction(3), Fraction(3), Fraction(4)),
}
TIER_FACTORS = {"default": Fraction(1), "flex": Fraction(1, 2), "priority": Fraction(2)}


@pytest.fixture
def key(gateway: Gateway) -> str:
    """A key of a fresh account holding 10 units."""
    return new_key(gateway)


@pytest.fixture
def sdk(gateway: Gateway, key: str) -> Iterator[openai.OpenAI]:
    """The official client pointed at the gateway, without retries."""
    with gateway.openai_client(key) as client:
        yield client


def engine_of(gateway: Gateway) -> sqlalchemy.Engine:
    """An engine on the gateway's own database."""
    url = tomllib.loads(gateway.config_path.read_text())["database"]["url"]
    return sqlalchemy.create_engine(url)


def expected_cost(model: str, inp: int, cached: int, out: int, tier: str = "default") -> int:
    """The charge in micro-units, rounded half up, as the pricing docs promise."""
    price_in, price_cached, price_out = PRICES[model]
    exact = ((inp - cached) * price_in + cached * price_cached + out * price_out) * TIER_FACTORS[
        tier
    ]
    return int((exact * 2 + 1) // 2)


def check_record(
    row: dict[str, Any],
    model: str,
    usage: tuple[int, int, int],
    *,
    endpoint: str,
    tier: str = "default",
    upstream_model: str | None = None,
) -> None:
    """The usage record holds exactly the upstream's numbers and the matching charge."""
    inp, cached, out = usage
    assert row["endpoint"] == endpoint
    assert row["model"] == model and row["upstream_model"] == (upstream_model or model)
    assert (row["input_tokens"], row["cached_input_tokens"], row["output_tokens"]) == usage
    assert not row["estimated"] and row["status"] == 200 and row["tier"] == tier
    assert row["cost"] == expected_cost(model, inp, cached, out, tier)


def check_upstream_auth(upstream: FakeUpstream, key: str, path: str) -> dict[str, Any]:
    """The last upstream request went to `path` with the gateway's key; return its body."""
    request = upstream.requests[-1]
    assert request.path == path
    assert request.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert all(key not in value for value in request.headers.values())
    return request.json


def test_chat_plain_and_streamed_with_and_without_usage(gateway, upstream, sdk, key):
    messages = [{"role": "user", "content": PROMPT}]
    usage = (7, 3, N)  # "cached" in the model name: the fake reports half the input cached

    reply = sdk.chat.completions.create(model="gpt-4o-cached", messages=messages)
    assert reply.choices[0].message.content == reply_text("gpt-4o-cached", N)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, N)
    assert reply.usage.prompt_tokens_details.cached_tokens == 3
    check_upstream_auth(upstream, key, "/v1/chat/completions")

    chunks = list(
        sdk.chat.completions.create(model="gpt-4o-cached", messages=messages, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text("gpt-4o-cached", N)
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    body = check_upstream_auth(upstream, key, "/v1/chat/completions")
    assert body["stream_options"] == {"include_usage": True}

    chunks = list(
        sdk.chat.completions.create(
            model="gpt-4o-cached",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == N
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 3

    rows = records(gateway, key, 3)
    for row in rows:
        check_record(row, "gpt-4o-cached", usage, endpoint="chat.completions")
    assert rows[-1]["balance"] == 10_000_000 - 3 * expected_cost("gpt-4o-cached", *usage)


def test_legacy_completions_plain_and_streamed(gateway, upstream, sdk, key):
    reply = sdk.completions.create(model="gpt-4o-mini", prompt=PROMPT)
    assert reply.choices[0].text == reply_text("gpt-4o-mini", N)
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (7, N)
    check_upstream_auth(upstream, key, "/v1/completions")

    chunks = list(sdk.completions.create(model="gpt-4o-mini", prompt=PROMPT, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == reply_text("gpt-4o-mini", N)
    assert all(c.usage is None for c in chunks)
    body = check_upstream_auth(upstream, key, "/v1/completions")
    assert body["stream_options"] == {"include_usage": True}

    for row in records(gateway, key, 2):
        check_record(row, "gpt-4o-mini", (7, 0, N), endpoint="completions")


def test_embeddings_base64_pass_through_and_float(gateway, upstream, sdk, key):
    inputs = ["a b c", "d e"]
    result = sdk.embeddings.create(model="text-embedding-3-small", input=inputs)
    assert [d.embedding for d in result.data] == [
        [i + (j + 1) / 16 for j in range(8)] for i in range(2)
    ]
    assert result.usage.prompt_tokens == 5
    body = check_upstream_auth(upstream, key, "/v1/embeddings")
    assert body == {"model": "text-embedding-3-small", "input": inputs, "encoding_format": "base64"}

    raw = {"model": "text-embedding-3-small", "input": "x y", "encoding_format": "base64"}
    through_gateway = httpx.post(
        gateway.url + "/v1/embeddings", json=raw, headers={"authorization": f"Bearer {key}"}
    )
    direct = httpx.post(upstream.base_url + "/v1/embeddings", json=raw)
    assert through_gateway.status_code == 200
    assert through_gateway.content == direct.content  # the body is relayed byte for byte
    vector = base64.b64decode(through_gateway.json()["data"][0]["embedding"])
    assert struct.unpack("<8f", vector) == tuple((j + 1) / 16 for j in range(8))

    floats = sdk.embeddings.create(
        model="text-embedding-3-small", input="p q r s", encoding_format="float"
    )
    assert floats.data[0].embedding == [(j + 1) / 16 for j in range(8)]
    assert check_upstream_auth(upstream, key, "/v1/embeddings")["encoding_format"] == "float"

    rows = records(gateway, key, 3)
    for row, tokens in zip(rows, (5, 2, 4), strict=True):
        check_record(row, "text-embedding-3-small", (tokens, 0, 0), endpoint="embeddings")


def test_responses_plain_streamed_and_stream_helper(gateway, upstream, sdk, key):
    text = reply_text("gpt-4o-cached", N)
    reply = sdk.responses.create(model="gpt-4o-cached", input=PROMPT, instructions="be brief")
    assert reply.output_text == text
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (9, N)
    assert reply.usage.input_tokens_details.cached_tokens == 4
    body = check_upstream_auth(upstream, key, "/v1/responses")
    assert "stream" not in body

    events = list(sdk.responses.create(model="gpt-4o-cached", input=PROMPT, stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == text
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.input_tokens_details.cached_tokens == 3
    assert check_upstream_auth(upstream, key, "/v1/responses")["stream"] is True

    with sdk.responses.stream(model="gpt-4o-cached", input=PROMPT) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == text and final.output_text == text
    assert final.usage.output_tokens == N

    rows = records(gateway, key, 3)
    check_record(rows[0], "gpt-4o-cached", (9, 4, N), endpoint="responses")
    for row in rows[1:]:
        check_record(row, "gpt-4o-cached", (7, 3, N), endpoint="responses")


def test_responses_input_tokens_is_answered_and_costs_nothing(gateway, upstream, sdk, key):
    counted = sdk.responses.input_tokens.count(model="gpt-4o-mini", input=PROMPT)
    assert counted.input_tokens == 7
    check_upstream_auth(upstream, key, "/v1/responses/input_tokens")
    (row,) = records(gateway, key, 1)
    assert row["endpoint"] == "responses.input_tokens" and row["status"] == 200
    assert (row["input_tokens"], row["output_tokens"], row["cost"]) == (0, 0, 0)
    assert row["balance"] == 10_000_000


def test_models_list_and_retrieve(upstream, sdk):
    names = ["gpt-4o-cached", "gpt-4o-mini", "my-alias", "text-embedding-3-small"]
    assert [m.id for m in sdk.models.list()] == names
    assert sdk.models.retrieve("my-alias").id == "my-alias"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-5")
    assert upstream.requests == []  # answered from the gateway's own config


def test_model_map_rewrites_upstream_model_and_bills_the_public_name(gateway, upstream, sdk, key):
    reply = sdk.chat.completions.create(
        model="my-alias", messages=[{"role": "user", "content": PROMPT}]
    )
    assert reply.choices[0].message.content == reply_text("gpt-4o-mini", N)
    assert check_upstream_auth(upstream, key, "/v1/chat/completions")["model"] == "gpt-4o-mini"

    with sdk.responses.stream(model="my-alias", input=PROMPT) as stream:
        final = stream.get_final_response()
    assert final.output_text == reply_text("gpt-4o-mini", N)
    assert check_upstream_auth(upstream, key, "/v1/responses")["model"] == "gpt-4o-mini"

    rows = records(gateway, key, 2)
    for row, endpoint in zip(rows, ("chat.completions", "responses"), strict=True):
        check_record(row, "my-alias", (7, 0, N), endpoint=endpoint, upstream_model="gpt-4o-mini")


def test_service_tier_the_upstream_reports_is_recorded_and_priced(gateway, upstream, sdk, key):
    messages = [{"role": "user", "content": PROMPT}]
    flex = sdk.chat.completions.create(
        model="gpt-4o-cached", messages=messages, service_tier="flex"
    )
    assert flex.service_tier == "flex"
    # "auto" is the client's wish; the upstream reports serving it in "default"
    auto = list(
        sdk.chat.completions.create(
            model="gpt-4o-cached", messages=messages, service_tier="auto", stream=True
        )
    )
    assert auto[-1].service_tier == "default"
    with sdk.responses.stream(model="gpt-4o-cached", input=PROMPT, service_tier="priority") as s:
        assert s.get_final_response().service_tier == "priority"

    rows = records(gateway, key, 3)
    check_record(rows[0], "gpt-4o-cached", (7, 3, N), endpoint="chat.completions", tier="flex")
    check_record(rows[1], "gpt-4o-cached", (7, 3, N), endpoint="chat.completions")
    check_record(rows[2], "gpt-4o-cached", (7, 3, N), endpoint="responses", tier="priority")


def test_upstream_400_passes_its_message_through(gateway, upstream, sdk, key):
    upstream.fail_with(400)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 400
    assert info.value.body["message"] == "Injected failure 400"
    assert info.value.body["type"] == "invalid_request_error"
    (row,) = records(gateway, key, 1)
    assert row["status"] == 400 and row["cost"] == 0 and row["balance"] == 10_000_000


def test_upstream_500_is_a_502_in_openai_shape(gateway, upstream, sdk, key):
    upstream.fail_with(500)
    with pytest.raises(openai.InternalServerError) as info:
        sdk.responses.create(model="gpt-4o-mini", input=PROMPT)
    assert info.value.status_code == 502
    assert set(info.value.body) == {"message", "type", "param", "code"}
    assert info.value.body["code"] == "upstream_error"
    (row,) = records(gateway, key, 1)
    assert row["status"] == 502 and row["cost"] == 0 and row["balance"] == 10_000_000


def test_stream_cut_midway_raises_and_charges_what_was_delivered(gateway, upstream, sdk, key):
    upstream.cut_stream_after(5)
    received: list[str] = []
    with pytest.raises(openai.APIError, match="Stream failed"):
        for chunk in sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "".join(reply_pieces("gpt-4o-mini", N)[:5])

    upstream.cut_stream_after(3)
    deltas: list[str] = []
    with pytest.raises(openai.APIError, match="Stream failed"):
        for event in sdk.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True):
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
    assert len(deltas) == 3

    rows = records(gateway, key, 2)
    for row, text in zip(rows, ("".join(received), "".join(deltas)), strict=True):
        assert row["status"] == 502 and row["estimated"]
        assert row["output_tokens"] == -(-len(text) // 4)  # four characters per token
        assert row["input_tokens"] > 0 and row["cost"] > 0
    assert rows[-1]["balance"] == 10_000_000 - sum(r["cost"] for r in rows)


def test_responses_relay_ends_only_on_a_terminal_event_type():
    """Text that merely names a terminal event (echoed instructions) does not end the stream."""
    relay = ResponsesStreamRelay(Call("req_1", Family.OPENAI, "responses", "m", stream=True))
    created = {
        "type": "response.created",
        "response": {"instructions": "say response.completed", "usage": None},
    }
    event = b"event: response.created\ndata: " + json.dumps(created).encode() + b"\n\n"
    assert relay.feed(event) == event
    assert not relay.finished and not relay.saw_usage
    usage = {"input_tokens": 3, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}}
    done = {"type": "response.completed", "response": {"usage": usage, "service_tier": "flex"}}
    relay.feed(b"data: " + json.dumps(done).encode() + b"\n\n")
    assert relay.finished and relay.saw_usage
    assert (relay.usage.input_tokens, relay.usage.cached_input_tokens) == (3, 1)
    assert (relay.usage.output_tokens, relay.usage.service_tier) == (2, "flex")
