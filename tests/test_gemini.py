"""The Gemini API family end to end with the official `google-genai` SDK.

The SDK talks to a running gateway the way users point it there
(``genai.Client(api_key=..., http_options=HttpOptions(base_url=GATEWAY))``), once through the
bundled mock provider and once through the `gemini` adapter to the fake upstream
(tests/fake_upstream/). Each test checks what the SDK sees, what the gateway recorded in
`usage_records`, and what the upstream received (the gateway's own key, never the client's).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from conftest import Gateway, new_key, records
from fake_upstream import reply_text
from google import genai
from google.genai import errors, types
from tokone.core.types import Call, Family
from tokone.providers.gemini import GeminiStreamRelay, reply_usage
from tokone.providers.mock_words import REPLY, WORDS

N = 16
pytestmark = pytest.mark.usefixtures("reset_upstream")
PROMPT = "one two three four five six seven"  # 7 input tokens at the fake upstream and the mock
UPSTREAM_KEY = "upstream-secret"
THINKER = "gemini-thinking-cached"  # the fake reports 3 thought tokens and half the input cached
PROVIDERS = """
[[providers]]
name = "mock"
adapter = "mock"
models = ["mock-1"]

[[providers]]
name = "google"
adapter = "gemini"
base_url = "{base}"
api_key = "upstream-secret"
models = ["gemini-2.5-flash", "gemini-thinking-cached"]
model_map = {{"my-embedder" = "gemini-embedding-001"}}

[prices."gemini-2.5-flash"]
input = 0.30
output = 2.50

[prices."gemini-thinking-cached"]
input = 1.0
output = 2.0
cached_input = 0.5

[prices."my-embedder"]
input = 0.15
"""


@pytest.fixture
def key(gateway: Gateway) -> str:
    """A key of a fresh account holding 10 units."""
    return new_key(gateway, prefix="gem")


def client(gateway: Gateway, key: str, api_version: str | None = None) -> genai.Client:
    """The official client pointed at the gateway (its default API version is `v1`)."""
    options = types.HttpOptions(base_url=gateway.url, api_version=api_version)
    return genai.Client(api_key=key, http_options=options)


def summary(row: dict[str, Any]) -> tuple[str, int, int, int, bool, int]:
    """(endpoint, input, cached, output, estimated, status) of a usage record."""
    return (
        row["endpoint"],
        row["input_tokens"],
        row["cached_input_tokens"],
        row["output_tokens"],
        bool(row["estimated"]),
        row["status"],
    )


def test_relay_reads_crlf_framed_sse_however_it_is_split():
    events = [
        {
            "candidates": [{"content": {"parts": [{"text": "Hel"}]}}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1},
        },
        {
            "candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 2,
                "thoughtsTokenCount": 4,
                "cachedContentTokenCount": 2,
            },
        },
    ]
    wire = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events)
    for cut in range(1, len(wire)):
        relay = GeminiStreamRelay(Call("r", Family.GEMINI, "streamGenerateContent", "m"))
        out = relay.feed(wire[:cut])
        assert out == b"" or out.endswith(b"\n\n")
        out += relay.feed(wire[cut:]) + relay.finish()
        assert out == wire.replace(b"\r\n", b"\n"), cut
        assert relay.finished and relay.delivered_chars == 5
        usage = relay.usage
        assert (usage.input_tokens, usage.cached_input_tokens, usage.output_tokens) == (5, 2, 6)

    blocked = GeminiStreamRelay(Call("r", Family.GEMINI, "streamGenerateContent", "m"))
    event = b'data: {"promptFeedback": {"blockReason": "SAFETY"}}\r\n\r\n'
    assert blocked.feed(event) == event.replace(b"\r\n", b"\n") and blocked.finished


def test_a_reply_without_usage_metadata_is_estimated():
    raw = b'{"contents": [{"parts": [{"text": "abcdefgh"}]}]}'
    reply = b'{"candidates": [{"content": {"parts": [{"text": "abcde"}]}}]}'
    usage = reply_usage(Call("r", Family.GEMINI, "generateContent", "m", raw), reply)
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (2, 2, True)
    free = reply_usage(Call("r", Family.GEMINI, "countTokens", "m", raw), b'{"totalTokens": 2}')
    assert (free.input_tokens, free.output_tokens) == (0, 0)


def test_mock_answers_every_action_in_both_api_versions(gateway, upstream, key):
    for version in (None, "v1beta"):
        sdk = client(gateway, key, version)
        reply = sdk.models.generate_content(model="mock-1", contents=PROMPT)
        assert reply.text == REPLY
        assert reply.usage_metadata.prompt_token_count == 7
        assert reply.usage_metadata.candidates_token_count == len(WORDS)
        assert reply.sdk_http_response.headers["x-request-id"].startswith("req_")

        chunks = list(sdk.models.generate_content_stream(model="mock-1", contents=PROMPT))
        assert len(chunks) == len(WORDS)
        assert "".join(c.text for c in chunks) == REPLY
        assert chunks[-1].usage_metadata.candidates_token_count == len(WORDS)

        assert sdk.models.count_tokens(model="mock-1", contents=PROMPT).total_tokens == 7
        single = sdk.models.embed_content(model="mock-1", contents=PROMPT)
        assert [e.values for e in single.embeddings] == [[1.0, 2.0, 3.0, 4.0]]
        batch = sdk.models.embed_content(model="mock-1", contents=["alpha beta", "gamma"])
        assert len(batch.embeddings) == 2

        assert [m.name for m in sdk.models.list()] == [
            "models/gemini-2.5-flash",
            "models/gemini-thinking-cached",
            "models/mock-1",
            "models/my-embedder",
        ]
        assert sdk.models.get(model="mock-1").name == "models/mock-1"
    assert upstream.requests == []

    rows = records(gateway, key, 10)
    # embeddings carry no usage: 33 characters -> 9 tokens, then 3 + 2 for the two items
    expected = [
        ("generateContent", 7, 0, len(WORDS), False, 200),
        ("streamGenerateContent", 7, 0, len(WORDS), False, 200),
        ("countTokens", 0, 0, 0, False, 200),
        ("batchEmbedContents", 9, 0, 0, True, 200),
        ("batchEmbedContents", 5, 0, 0, True, 200),
    ]
    assert [summary(r) for r in rows] == expected * 2
    assert [r["cost"] for r in rows[:4]] == [7 + 2 * len(WORDS), 7 + 2 * len(WORDS), 0, 9]


def test_gemini_adapter_relays_and_bills_upstream_usage(gateway, upstream, key):
    sdk = client(gateway, key)
    reply = sdk.models.generate_content(model=THINKER, contents=PROMPT)
    assert reply.text == reply_text(THINKER, N)
    meta = reply.usage_metadata
    assert (meta.prompt_token_count, meta.cached_content_token_count) == (7, 3)
    assert (meta.candidates_token_count, meta.thoughts_token_count) == (N, 3)

    beta = client(gateway, key, "v1beta")  # a client must outlive its streams
    chunks = list(beta.models.generate_content_stream(model=THINKER, contents=PROMPT))
    assert "".join(c.text for c in chunks) == reply_text(THINKER, N)
    assert chunks[-1].usage_metadata.candidates_token_count == N

    assert sdk.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT).total_tokens == 7
    single = sdk.models.embed_content(model="my-embedder", contents=PROMPT)
    assert single.embeddings[0].values == [j / 16 for j in range(1, 9)]
    batch = sdk.models.embed_content(model="my-embedder", contents=["alpha beta", "gamma"])
    assert [e.values[0] for e in batch.embeddings] == [1 / 16, 1 + 1 / 16]

    sent = upstream.requests
    assert [(r.path, r.query) for r in sent] == [
        (f"/v1/models/{THINKER}:generateContent", ""),
        (f"/v1beta/models/{THINKER}:streamGenerateContent", "alt=sse"),
        ("/v1/models/gemini-2.5-flash:countTokens", ""),
        ("/v1/models/gemini-embedding-001:batchEmbedContents", ""),
        ("/v1/models/gemini-embedding-001:batchEmbedContents", ""),
    ]
    for request in sent:
        assert request.headers["x-goog-api-key"] == UPSTREAM_KEY
        assert all(key not in value for value in request.headers.values())
    assert sent[0].json == {"contents": [{"parts": [{"text": PROMPT}], "role": "user"}]}
    # the batch's per-request model must match the URL, so the mapped name is written in
    assert {r["model"] for r in sent[-1].json["requests"]} == {"models/gemini-embedding-001"}

    rows = records(gateway, key, 5)
    assert [summary(r) for r in rows] == [
        ("generateContent", 7, 3, N + 3, False, 200),  # thoughts are billed as output
        ("streamGenerateContent", 7, 3, N + 3, False, 200),
        ("countTokens", 0, 0, 0, False, 200),
        ("batchEmbedContents", 9, 0, 0, True, 200),
        ("batchEmbedContents", 5, 0, 0, True, 200),
    ]
    assert rows[3]["upstream_model"] == "gemini-embedding-001"
    # 4 input at 1.0 + 3 cached at 0.5 + 19 output at 2.0 micro-units per token
    assert rows[0]["cost"] == rows[1]["cost"] == 4 + 2 + 2 * (N + 3)


def test_stream_without_alt_sse_is_one_json_array(gateway, key):
    response = httpx.post(
        gateway.url + "/v1beta/models/mock-1:streamGenerateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    )
    assert response.status_code == 200
    chunks = response.json()
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == REPLY
    assert chunks[-1]["usageMetadata"]["candidatesTokenCount"] == len(WORDS)


def test_max_output_tokens_sizes_the_hold(gateway):
    # 1000 micro-units; mock-1 output costs 2 per token
    key = new_key(gateway, "0.001", prefix="gem")
    sdk = client(gateway, key)
    with pytest.raises(errors.ClientError) as info:  # default cap: 1000 tokens -> 2000 held
        sdk.models.generate_content(model="mock-1", contents=PROMPT)
    assert (info.value.code, info.value.status) == (402, "RESOURCE_EXHAUSTED")
    config = types.GenerateContentConfig(max_output_tokens=100)
    assert sdk.models.generate_content(model="mock-1", contents=PROMPT, config=config).text == REPLY


def test_refusals_and_failures_in_gemini_shape(gateway, upstream, key):
    stranger = client(gateway, "sk-not-a-real-key")  # a client dropped mid-call closes itself
    with pytest.raises(errors.ClientError) as info:
        stranger.models.generate_content(model="mock-1", contents="x")
    assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")
    beta_stranger = client(gateway, "sk-not-a-real-key", "v1beta")
    with pytest.raises(errors.ClientError) as info:
        beta_stranger.models.list()
    assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")

    sdk = client(gateway, key)
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="gemini-9-ultra", contents="x")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")
    with pytest.raises(errors.ClientError) as info:
        sdk.models.get(model="gemini-9-ultra")
    assert (info.value.code, info.value.status) == (404, "NOT_FOUND")

    body = {"contents": [{"parts": [{"text": "x"}]}]}
    url = gateway.url + "/v1beta/models/mock-1:generateContent"
    response = httpx.post(url + "?key=" + key, json=body)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    response = httpx.post(
        url.replace("generateContent", "explode"), json=body, headers={"x-goog-api-key": key}
    )
    assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND"
    response = httpx.post(url, content=b"{nope", headers={"x-goog-api-key": key})
    assert response.status_code == 400 and response.json()["error"]["code"] == 400

    upstream.fail_with(500)
    with pytest.raises(errors.ServerError) as info:
        sdk.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert info.value.code == 502

    upstream.cut_stream_after(3)
    received: list[str] = []
    with pytest.raises(errors.ServerError) as info:
        for chunk in sdk.models.generate_content_stream(model="gemini-2.5-flash", contents=PROMPT):
            received.append(chunk.text)
    assert "".join(received) == reply_text("gemini-2.5-flash", 3)
    assert info.value.code == 502

    failed, cut = records(gateway, key, 2)  # refusals before routing leave no record
    assert summary(failed) == ("generateContent", 0, 0, 0, False, 502)
    # the cut stream is charged for what was delivered: the last usageMetadata seen
    assert summary(cut) == ("streamGenerateContent", 7, 0, 3, False, 502)
    assert key not in gateway.log
