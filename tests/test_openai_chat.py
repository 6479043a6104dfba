"""End to end with the official `openai` SDK against a running gateway (the mock provider)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from conftest import (
    FAST_REFRESH,
    KEY_ACCOUNTS,
    MOCK_PROVIDER,
    key_status,
    new_key,
    wait_for_usage,
    wait_until,
)
from tokone.providers.mock_words import REPLY, WORDS

PROVIDERS = MOCK_PROVIDER + FAST_REFRESH
"""One gateway for the module (conftest's `gateway`); every test uses accounts of its own."""


def test_plain_and_streaming_chat_are_answered_and_billed(gateway):
    key = gateway.funded_key("plain")
    sdk = gateway.openai_client(key)
    messages = [{"role": "user", "content": "say hello to me"}]

    reply = sdk.chat.completions.create(model="mock-1", messages=messages)
    assert reply.choices[0].message.content == REPLY
    assert reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens == len(WORDS)

    chunks = list(sdk.chat.completions.create(model="mock-1", messages=messages, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REPLY
    # the client did not ask for usage, so the usage chunk the gateway requested is stripped
    assert all(c.usage is None for c in chunks)

    with_usage = list(
        sdk.chat.completions.create(
            model="mock-1", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].usage.completion_tokens == len(WORDS)

    data = wait_for_usage(gateway, 3, "plain")
    # mock-1: 1.0 / 2.0 per million tokens -> 4 input * 1 + 12 output * 2 = 28 micro-units each
    assert data["usage"]["input_tokens"] == 12
    assert data["usage"]["output_tokens"] == 3 * len(WORDS)
    assert data["usage"]["cost_micro"] == 3 * (4 * 1 + len(WORDS) * 2)
    assert data["balance_micro"] == 10_000_000 - data["usage"]["cost_micro"]


def test_unknown_key_is_401_in_openai_shape(gateway):
    with pytest.raises(openai.AuthenticationError) as info:
        gateway.openai_client("sk-not-a-real-key").models.list()
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"
    response = httpx.post(gateway.url + "/v1/chat/completions", json={"model": "mock-1"})
    assert response.status_code == 401 and "Missing API key" in response.json()["error"]["message"]


def test_key_in_query_string_is_400_even_with_a_header(gateway):
    key = new_key(gateway)
    response = httpx.post(
        gateway.url + "/v1/chat/completions?key=" + key,
        headers={"authorization": f"Bearer {key}"},
        json={"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "api_key_in_query"
    assert key not in gateway.log


def test_disable_enable_revoke_and_rotate_take_effect_within_a_second(gateway):
    key = gateway.funded_key("switched")
    sdk = gateway.openai_client(key)
    sdk.models.list()
    key_id = gateway.account("switched")["keys"][0]["id"]

    gateway.cli("keys", "disable", str(key_id))
    wait_until(lambda: key_status(gateway, key) == 403)
    with pytest.raises(openai.PermissionDeniedError, match="disabled"):
        sdk.chat.completions.create(model="mock-1", messages=[{"role": "user", "content": "x"}])

    gateway.cli("keys", "enable", str(key_id))
    wait_until(lambda: key_status(gateway, key) == 200)
    sdk.models.list()

    new_key = gateway.cli("keys", "rotate", str(key_id)).strip().splitlines()[-1]
    assert new_key != key and new_key.startswith("sk-")
    wait_until(lambda: key_status(gateway, key) == 401)
    with pytest.raises(openai.AuthenticationError):
        sdk.models.list()
    gateway.openai_client(new_key).models.list()

    gateway.cli("keys", "revoke", str(key_id))
    wait_until(lambda: key_status(gateway, new_key) == 403)
    with pytest.raises(openai.PermissionDeniedError, match="revoked"):
        gateway.openai_client(new_key).models.list()


def test_unknown_model_is_404_and_disallowed_model_is_403(gateway):
    sdk = gateway.openai_client(new_key(gateway))
    with pytest.raises(openai.NotFoundError, match="GET /v1/models"):
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    restricted = gateway.openai_client(
        gateway.funded_key("restricted", "", "--models", "other-model")
    )
    with pytest.raises(openai.PermissionDeniedError) as info:
        restricted.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["x-should-retry"] == "false"
    assert [m.id for m in restricted.models.list()] == []


def test_expired_key_is_403(gateway):
    key = gateway.funded_key("expired", "1", "--expires-in", "0.000001")
    time.sleep(0.2)
    with pytest.raises(openai.PermissionDeniedError, match="expired"):
        gateway.openai_client(key).models.list()


def test_models_lists_what_the_key_may_use(gateway):
    sdk = gateway.openai_client(new_key(gateway))
    assert [m.id for m in sdk.models.list()] == ["mock-1"]
    assert sdk.models.retrieve("mock-1").id == "mock-1"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-5")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"model": 5}', "Expected `str`"),
        (b'{"messages": []}', "'model' field is required"),
        (b"", "body is empty"),
    ],
)
def test_bad_bodies_are_400_and_charge_nothing(gateway, body, message):
    key = new_key(gateway)
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]["message"]
    assert gateway.account(KEY_ACCOUNTS[key])["balance_micro"] == 10_000_000


def test_unknown_path_is_404_in_openai_shape(gateway):
    response = httpx.get(gateway.url + "/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_log_lines_are_json_with_request_id_and_never_the_key(gateway):
    key = gateway.funded_key("logged")
    reply = gateway.openai_client(key).chat.completions.with_raw_response.create(
        model="mock-1", messages=[{"role": "user", "content": "hello"}]
    )
    request_id = reply.headers["x-request-id"]
    wait_for_usage(gateway, 1, "logged")
    lines = [json.loads(line) for line in gateway.log.splitlines() if line.startswith("{")]
    assert any(line.get("request_id") == request_id and line["status"] == 200 for line in lines)
    assert key not in gateway.log
