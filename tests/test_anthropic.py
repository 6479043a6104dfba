"""End to end with the official `anthropic` SDK against a running gateway.

One gateway serves the module: `mock-1` through the bundled mock provider, the `claude-*`
models through the `anthropic` adapter against the fake upstream (which wants its own key,
"upstream-secret"). Every test uses its own account, so usage totals do not mix.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import anthropic
import httpx
import pytest
from conftest import MOCK_PROVIDER, price, provider
from fake_upstream import FakeUpstream, reply_pieces, reply_text
from ledger_checks import usage_record
from tokone.core.config import ProviderConfig
from tokone.core.tokens import estimate_chars
from tokone.core.types import Call, Family, Usage
from tokone.providers.anthropic import AnthropicAdapter, MessagesStreamRelay
from tokone.providers.mock_words import REPLY, WORDS

pytestmark = [
    pytest.mark.filterwarnings("ignore:The model .* is deprecated:DeprecationWarning"),
    pytest.mark.usefixtures("reset_upstream"),
]
UPSTREAM_KEY = "upstream-secret"
N = 16  # the fake upstream's reply has 16 pieces = 16 output tokens
PROMPT = "one two three four five six seven eight nine ten"  # 10 words
SYSTEM = "you are terse"  # 3 words: the fake upstream and the mock count system text too
PROVIDERS = (
    MOCK_PROVIDER
    + provider(
        "claude",
        "{base}",
        adapter="anthropic",
        api_key=UPSTREAM_KEY,
        models=("claude-sonnet-4-5", "claude-cached-4-5"),
        extra='model_map = {{ "claude-mapped" = "claude-cached-4-5" }}\n'
        "timeouts = {{ connect = 2, first_byte = 5, idle = 5 }}",
    )
    + price("claude-*", 3.0, 15.0, cached_input=0.3)
)
"""The module's gateway (conftest's `gateway`): the mock and the fake upstream as `claude`."""


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """The fake upstream, refusing any call without the channel's key."""
    up = FakeUpstream(require_key=UPSTREAM_KEY).start()
    yield up
    up.stop()


_accounts = itertools.count(1)


@pytest.fixture
def account() -> str:
    return f"acct{next(_accounts)}"


def user(text: str = PROMPT) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_mock_answers_messages_streams_and_counts(gateway, account):
    sdk = gateway.anthropic_client(gateway.funded_key(account))
    raw = sdk.messages.with_raw_response.create(model="mock-1", max_tokens=50, messages=user())
    message = raw.parse()
    assert message.content[0].text == REPLY and message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, len(WORDS))
    assert message.usage.cache_read_input_tokens == 0

    with sdk.messages.stream(
        model="mock-1", max_tokens=50, system=SYSTEM, messages=user()
    ) as stream:
        assert "".join(stream.text_stream) == REPLY
        final = stream.get_final_message()
    assert final.content[0].text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (13, len(WORDS))

    assert sdk.messages.count_tokens(model="mock-1", messages=user()).input_tokens == 10

    record = usage_record(gateway, raw.headers["x-request-id"])
    assert (record["input_tokens"], record["output_tokens"], record["estimated"]) == (
        10,
        len(WORDS),
        0,
    )
    data = gateway.account(account)
    assert data["usage"]["requests"] == 3  # count_tokens is recorded, for free
    assert data["usage"]["input_tokens"] == 23
    # mock-1: 1.0 input / 2.0 output per million tokens
    assert data["usage"]["cost_micro"] == 23 * 1 + 2 * len(WORDS) * 2


def test_mock_stream_is_anthropics_event_sequence(gateway, account):
    key = gateway.funded_key(account)
    with httpx.stream(
        "POST",
        gateway.url + "/v1/messages",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        json={"model": "mock-1", "max_tokens": 50, "stream": True, "messages": user()},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        names = [line[7:] for line in response.iter_lines() if line.startswith("event: ")]
    deltas = ["content_block_delta"] * len(WORDS)
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_adapter_relays_text_usage_and_uses_its_own_key(gateway, upstream, account):
    key = gateway.funded_key(account)
    sdk = gateway.anthropic_client(key)
    raw = sdk.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=100, system=SYSTEM, messages=user()
    )
    message = raw.parse()
    assert message.content[0].text == reply_text("claude-sonnet-4-5", N)
    assert message.model == "claude-sonnet-4-5"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (13, N)

    record = usage_record(gateway, raw.headers["x-request-id"])
    assert record["provider"] == "claude" and record["upstream_model"] == "claude-sonnet-4-5"
    assert (record["input_tokens"], record["cached_input_tokens"]) == (13, 0)
    assert (record["output_tokens"], record["estimated"]) == (N, 0)
    assert record["cost"] == 13 * 3 + N * 15
    assert record["tier"] == "default"  # upstream's "standard"

    [seen] = upstream.requests
    assert (seen.method, seen.path, seen.query) == ("POST", "/v1/messages", "")
    assert seen.headers["x-api-key"] == UPSTREAM_KEY
    assert seen.headers["anthropic-version"] == sdk.default_headers["anthropic-version"]
    assert "authorization" not in seen.headers and "anthropic-beta" not in seen.headers
    assert not any(key in value for value in seen.headers.values())
    assert seen.json == {
        "max_tokens": 100,
        "messages": user(),
        "model": "claude-sonnet-4-5",
        "system": SYSTEM,
    }


def test_adapter_stream_maps_the_model_and_bills_cache_reads(gateway, upstream, account):
    sdk = gateway.anthropic_client(gateway.funded_key(account))
    prompt = " ".join(["word"] * 17)  # + 3 system words = 20 input, 10 of them cache reads
    with sdk.messages.stream(
        model="claude-mapped", max_tokens=100, system=SYSTEM, messages=user(prompt)
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text == reply_text("claude-cached-4-5", N)
    assert final.usage.input_tokens == 10 and final.usage.cache_read_input_tokens == 10
    assert final.usage.output_tokens == N

    assert upstream.requests[0].json["model"] == "claude-cached-4-5"
    assert upstream.requests[0].json["stream"] is True
    record = usage_record(gateway, request_id)
    assert (record["model"], record["upstream_model"]) == ("claude-mapped", "claude-cached-4-5")
    assert (record["input_tokens"], record["cached_input_tokens"]) == (20, 10)
    assert (record["output_tokens"], record["estimated"], record["status"]) == (N, 0, 200)
    assert record["cost"] == 10 * 3 + 3 + N * 15  # 10 cache reads at 0.3 = 3 micro-units


def test_beta_calls_versions_and_count_tokens_are_forwarded(gateway, upstream, account):
    key = gateway.funded_key(account)
    sdk = gateway.anthropic_client(key)
    message = sdk.beta.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=20,
        messages=user(),
        betas=["context-1m-2025-08-07"],
        extra_query={"beta": "true"},
        extra_headers={"anthropic-version": "2023-01-01"},
    )
    assert message.content[0].text == reply_text("claude-sonnet-4-5", N)
    counted = sdk.beta.messages.count_tokens(
        model="claude-sonnet-4-5",
        messages=user(),
        betas=["context-1m-2025-08-07"],
        extra_query={"beta": "true"},
    )
    assert counted.input_tokens == 10
    assert sdk.messages.count_tokens(model="claude-sonnet-4-5", messages=user()).input_tokens == 10

    create, beta_count, count = upstream.requests
    assert (create.path, create.query) == ("/v1/messages", "beta=true")
    assert create.headers["anthropic-beta"] == "context-1m-2025-08-07"
    assert create.headers["anthropic-version"] == "2023-01-01"
    assert (beta_count.path, beta_count.query) == ("/v1/messages/count_tokens", "beta=true")
    # the SDK adds token counting's own beta flag; both arrive upstream
    assert beta_count.headers["anthropic-beta"] == "context-1m-2025-08-07,token-counting-2024-11-01"
    assert (count.path, count.query) == ("/v1/messages/count_tokens", "")
    assert all(r.headers["x-api-key"] == UPSTREAM_KEY for r in upstream.requests)
    data = gateway.account(account)
    assert data["usage"]["requests"] == 3
    assert data["usage"]["input_tokens"] == 10 and data["usage"]["output_tokens"] == N


def test_models_are_listed_in_anthropics_shape(gateway, account):
    key = gateway.funded_key(account)
    sdk = gateway.anthropic_client(key)
    names = ["claude-cached-4-5", "claude-mapped", "claude-sonnet-4-5", "mock-1"]
    page = sdk.models.list(limit=3)
    assert [m.id for m in page.data] == names[:3] and page.has_more
    assert page.first_id == names[0] and page.last_id == names[2]
    assert [m.id for m in sdk.models.list(limit=3)] == names  # auto-paging via after_id
    before = sdk.models.list(before_id="mock-1", limit=2)
    assert [m.id for m in before.data] == names[1:3] and before.has_more
    assert [m.id for m in before] == [*names[1:3], names[0]]  # pages backwards via before_id
    model = sdk.models.retrieve("mock-1")
    assert (model.type, model.id, model.display_name) == ("model", "mock-1", "mock-1")
    with pytest.raises(anthropic.NotFoundError) as info:
        sdk.models.retrieve("claude-nope")
    assert info.value.body["type"] == "error"
    # without anthropic-version the same path stays OpenAI's
    openai_shape = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {key}"})
    assert openai_shape.json()["object"] == "list"


def test_refusals_come_in_anthropics_error_shape(gateway, account):
    key = gateway.funded_key(account)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        gateway.anthropic_client("sk-not-a-real-key").messages.create(
            model="mock-1", max_tokens=5, messages=user()
        )
    assert auth.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        gateway.anthropic_client("sk-not-a-real-key").models.list()

    sdk = gateway.anthropic_client(key)
    with pytest.raises(anthropic.NotFoundError) as missing:
        sdk.messages.create(model="claude-nope", max_tokens=5, messages=user())
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert "claude-nope" in missing.value.api_message

    broke = gateway.funded_key(account + "-broke", "")
    with pytest.raises(anthropic.PaymentRequiredError) as billing:
        messages = gateway.anthropic_client(broke).messages
        messages.create(model="mock-1", max_tokens=5, messages=user())
    assert billing.value.body["error"]["type"] == "billing_error"

    restricted = gateway.funded_key(account, "", "--models", "claude-sonnet-4-5")
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        messages = gateway.anthropic_client(restricted).messages
        messages.create(model="mock-1", max_tokens=5, messages=user())
    assert denied.value.body["error"]["type"] == "permission_error"

    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    for body, message in [(b"{not json", "not valid JSON"), (b"{}", "model: Field required")]:
        response = httpx.post(gateway.url + "/v1/messages", content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["type"] == "error"
        assert response.json()["error"]["type"] == "invalid_request_error"
        assert message in response.json()["error"]["message"]
    in_query = httpx.post(
        gateway.url + f"/v1/messages?beta=true&key={key}",
        headers=headers,
        json={"model": "mock-1", "max_tokens": 5, "messages": user()},
    )
    assert in_query.status_code == 400 and in_query.json()["type"] == "error"
    assert gateway.account(account)["balance_micro"] == 10_000_000


def test_upstream_failures_are_anthropic_shaped(gateway, upstream, account):
    sdk = gateway.anthropic_client(gateway.funded_key(account))
    upstream.fail_with(500)
    with pytest.raises(anthropic.InternalServerError) as failed:
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=user())
    assert failed.value.status_code == 502
    assert failed.value.body["type"] == "error"
    assert failed.value.body["error"]["type"] == "api_error"

    upstream.fail_with(429, retry_after=7)
    with pytest.raises(anthropic.APIStatusError) as limited:
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=user())
    assert limited.value.status_code == 503 and limited.value.type == "overloaded_error"
    assert limited.value.response.headers["retry-after"] == "7"

    upstream.fail_with(400)
    with pytest.raises(anthropic.BadRequestError, match="Injected failure 400"):
        sdk.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=user())
    assert gateway.account(account)["usage"]["cost_micro"] == 0


def test_cut_stream_raises_and_bills_only_what_was_delivered(gateway, upstream, account):
    sdk = gateway.anthropic_client(gateway.funded_key(account))
    upstream.cut_stream_after(5)
    pieces: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as cut,
        sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=user()) as stream,
    ):
        request_id = stream.response.headers["x-request-id"]
        pieces.extend(stream.text_stream)
    assert cut.value.type == "api_error" and "Stream failed" in cut.value.api_message
    delivered = "".join(reply_pieces("claude-sonnet-4-5", N)[:5])
    assert "".join(pieces) == delivered

    record = usage_record(gateway, request_id)
    output = estimate_chars(len(delivered))
    assert (record["status"], record["estimated"]) == (502, 1)
    # the input count is message_start's exact one; the output is estimated from the text
    assert (record["input_tokens"], record["output_tokens"]) == (10, output)
    assert record["cost"] == 10 * 3 + output * 15


def test_relay_keeps_message_start_input_when_message_delta_has_only_output():
    """Older servers send `message_delta.usage = {"output_tokens": N}` only."""
    call = Call(request_id="req_x", family=Family.ANTHROPIC, endpoint="messages", model="m")
    relay = MessagesStreamRelay(call)
    start = {
        "type": "message_start",
        "message": {
            "usage": {
                "input_tokens": 4,
                "cache_creation_input_tokens": 6,
                "cache_read_input_tokens": 10,
                "output_tokens": 1,
                "service_tier": "priority",
            }
        },
    }
    events = [
        ("message_start", start),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi there"},
            },
        ),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 7},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    stream = b"".join(
        b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"
        for name, data in events
    )
    relayed = b"".join(relay.feed(stream[i : i + 7]) for i in range(0, len(stream), 7))
    assert relayed + relay.finish() == stream  # relayed byte for byte
    assert relay.finished and relay.saw_usage and relay.delivered_chars == len("Hi there")
    assert relay.usage == Usage(
        input_tokens=20, output_tokens=7, cached_input_tokens=10, service_tier="priority"
    )
    assert relay.saw_input and relay.saw_output  # input from message_start, output final


def test_base_url_may_or_may_not_end_in_v1():
    call = Call(request_id="req_x", family=Family.ANTHROPIC, endpoint="messages", model="m")
    root = AnthropicAdapter(
        ProviderConfig(
            name="a", adapter="anthropic", models=["m"], base_url="https://api.anthropic.com"
        )
    )
    versioned = AnthropicAdapter(
        ProviderConfig(
            name="b", adapter="anthropic", models=["m"], base_url="http://proxy.local/v1/"
        )
    )
    assert root.path(call) == "/v1/messages"
    call.beta_query = True
    assert versioned.path(call) == "/messages?beta=true"
