"""Translation end to end: each official SDK against a gateway whose only channel for the model
speaks the *other* family, in front of the fake upstream.

* `claude-*` models sit behind an `anthropic` channel only: the openai SDK calls them with
  chat completions (whole, streamed).
* `gpt-*` models sit behind an `openai` channel only: the anthropic SDK calls them with
  messages (whole, streamed).
* `gemini-*` models sit behind a `gemini` channel only: the openai and anthropic SDKs call
  them; google-genai calls the `gpt-*` and `claude-*` models.

Billing must be exact: the usage record holds what the upstream reported, its cost is the
price of that usage, and the ledger captured exactly that.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import openai
import pytest
from conftest import KEY_ACCOUNTS, new_key, records
from fake_upstream import reply_text
from google import genai
from google.genai import types as genai_types
from ledger_checks import assert_ledger_consistent, database_url
from tokone.core.tokens import estimate_chars

pytestmark = pytest.mark.usefixtures("reset_upstream")
N = 6
PROVIDERS = """
[[providers]]
name = "claude"
adapter = "anthropic"
base_url = "{base}"
models = ["claude-sonnet-4-5", "claude-cached-4-5", "both-model"]
timeouts = {{ connect = 2, first_byte = 5, idle = 5 }}

[[providers]]
name = "oai"
adapter = "openai"
base_url = "{base}/v1"
models = ["gpt-4o", "gpt-cached-4o", "both-model", "text-embedding-3-small"]
timeouts = {{ connect = 2, first_byte = 5, idle = 5 }}

[[providers]]
name = "chat-only"
adapter = "openai-chat"
base_url = "{base}/v1"
models = ["deepseek-chat"]

[[providers]]
name = "google"
adapter = "gemini"
base_url = "{base}"
models = ["gemini-2.5-flash", "gemini-thinking-cached", "gemini-embedding-001"]
timeouts = {{ connect = 2, first_byte = 5, idle = 5 }}

[prices."gemini-*"]
input = 2.0
output = 5.0
cached_input = 1.0

[prices."deepseek-chat"]
input = 2.0
output = 8.0

[prices."text-embedding-3-small"]
input = 1.0

[prices."both-model"]
input = 1.0
output = 1.0

[prices."claude-*"]
input = 3.0
output = 15.0
cached_input = 1.0

[prices."gpt-*"]
input = 2.0
output = 8.0
cached_input = 1.0
"""
PROMPT = "one two three four five six seven eight nine ten"  # 10 words
SYSTEM = "you are terse"  # 3 words


def openai_client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def anthropic_client(gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def cost(input_tokens: int, cached: int, output: int, prices: tuple[int, int, int]) -> int:
    """Micro-units for a usage at integer prices (input, cached input, output) per 1M."""
    return (input_tokens - cached) * prices[0] + cached * prices[1] + output * prices[2]


def check_billed(gateway, key: str, calls: int, expected: list[tuple[int, int, int, int]]):
    """Every call's usage record has (input, cached, output, cost) and the ledger agrees."""
    rows = records(gateway, key, calls)
    got = [
        (r["input_tokens"], r["cached_input_tokens"], r["output_tokens"], r["cost"]) for r in rows
    ]
    assert got == expected
    assert all(not r["estimated"] for r in rows)
    state = assert_ledger_consistent(database_url(gateway), KEY_ACCOUNTS[key])
    assert sum(state.captures.values()) == sum(e[3] for e in expected)


# ------------------------------------------------------------ openai SDK -> anthropic channel


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-cached-4-5"])
def test_openai_chat_over_an_anthropic_channel(gateway, upstream, model):
    key = new_key(gateway)
    reply = openai_client(gateway, key).chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
        max_tokens=50,
        stop=["zzz"],
        temperature=0.5,
    )
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.content == reply_text(model, N)
    assert reply.choices[0].finish_reason == "stop"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.json["system"] == SYSTEM
    assert sent.json["messages"] == [{"role": "user", "content": PROMPT}]
    assert sent.json["max_tokens"] == 50
    assert sent.json["stop_sequences"] == ["zzz"]
    assert sent.json["temperature"] == 0.5
    cached = 13 // 2 if "cached" in model else 0
    usage = reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (13, N)
    assert usage.prompt_tokens_details.cached_tokens == cached
    check_billed(gateway, key, 1, [(13, cached, N, cost(13, cached, N, (3, 1, 15)))])


def test_openai_chat_stream_over_an_anthropic_channel(gateway):
    key = new_key(gateway)
    model = "claude-cached-4-5"
    stream = openai_client(gateway, key).chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == reply_text(model, N)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[0].choices[0].delta.role == "assistant"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (10, N)
    assert last.usage.prompt_tokens_details.cached_tokens == 5
    check_billed(gateway, key, 1, [(10, 5, N, cost(10, 5, N, (3, 1, 15)))])


def test_openai_stream_without_include_usage_gets_no_usage_chunk_but_is_billed(gateway):
    key = new_key(gateway)
    chunks = list(
        openai_client(gateway, key).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)
    check_billed(gateway, key, 1, [(10, 0, N, cost(10, 0, N, (3, 1, 15)))])


def test_untranslatable_field_is_a_400_in_openai_shape(gateway, upstream):
    key = new_key(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway, key).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": PROMPT}], n=2
        )
    assert caught.value.body["param"] == "n"
    assert "'n'" in caught.value.message
    assert not [r for r in upstream.requests if r.path.endswith("/messages")]


def test_upstream_error_comes_back_in_the_openai_shape(gateway, upstream):
    key = new_key(gateway)
    upstream.fail_with(400, count=1)
    with pytest.raises(openai.BadRequestError):
        openai_client(gateway, key).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": PROMPT}]
        )


def test_translated_models_are_listed(gateway):
    key = new_key(gateway)
    names = {m.id for m in openai_client(gateway, key).models.list()}
    assert {"claude-sonnet-4-5", "gpt-4o"} <= names
    names = {m.id for m in anthropic_client(gateway, key).models.list()}
    assert {"claude-sonnet-4-5", "gpt-4o"} <= names


# ------------------------------------------------------------ anthropic SDK -> openai channel


@pytest.mark.parametrize("model", ["gpt-4o", "gpt-cached-4o"])
def test_anthropic_messages_over_an_openai_channel(gateway, upstream, model):
    key = new_key(gateway)
    message = anthropic_client(gateway, key).messages.create(
        model=model,
        max_tokens=64,
        system=[{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": PROMPT}],
        stop_sequences=["zzz"],
        extra_body={"temperature": 0.5},
    )
    assert message.type == "message"
    assert message.content[0].text == reply_text(model, N)
    assert message.stop_reason == "end_turn"
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json["messages"] == [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
        {"role": "user", "content": PROMPT},
    ]
    assert (sent.json["max_tokens"], sent.json["stop"], sent.json["temperature"]) == (
        64,
        ["zzz"],
        0.5,
    )
    cached = 13 // 2 if "cached" in model else 0
    usage = message.usage
    assert usage.input_tokens + usage.cache_read_input_tokens == 13
    assert usage.cache_read_input_tokens == cached
    assert usage.output_tokens == N
    check_billed(gateway, key, 1, [(13, cached, N, cost(13, cached, N, (2, 1, 8)))])


def test_anthropic_stream_over_an_openai_channel(gateway):
    key = new_key(gateway)
    model = "gpt-cached-4o"
    with anthropic_client(gateway, key).messages.stream(
        model=model, max_tokens=64, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert kinds[-2] == "message_delta"
    assert final.content[0].text == reply_text(model, N)
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (5, 5)
    assert final.usage.output_tokens == N
    check_billed(gateway, key, 1, [(10, 5, N, cost(10, 5, N, (2, 1, 8)))])


def test_upstream_error_comes_back_in_the_anthropic_shape(gateway, upstream):
    key = new_key(gateway)
    upstream.fail_with(429, count=5)
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_client(gateway, key).messages.create(
            model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": PROMPT}]
        )
    assert caught.value.body["type"] == "error"


def test_untranslatable_field_is_a_400_in_anthropic_shape(gateway):
    key = new_key(gateway)
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(gateway, key).messages.create(
            model="gpt-4o",
            max_tokens=10,
            messages=[{"role": "user", "content": PROMPT}],
            extra_body={"mcp_servers": [{"type": "url", "url": "http://x", "name": "x"}]},
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "'mcp_servers'" in caught.value.message


# ------------------------------------------------------------ gemini, both ways


def genai_client(gateway, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=gateway.url))


def test_openai_chat_and_stream_over_a_gemini_channel(gateway, upstream):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    model = "gemini-thinking-cached"
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}]
    reply = client.chat.completions.create(model=model, messages=messages, max_tokens=40)
    sent = upstream.requests[-1]
    assert sent.path == f"/v1beta/models/{model}:generateContent"
    assert sent.json["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
    assert sent.json["generationConfig"] == {"maxOutputTokens": 40}
    assert reply.choices[0].message.content == reply_text(model, N)
    usage = reply.usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (13, N + 3)
    assert usage.completion_tokens_details.reasoning_tokens == 3
    assert usage.prompt_tokens_details.cached_tokens == 6
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert upstream.requests[-1].path.endswith(":streamGenerateContent")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply_text(
        model, N
    )
    assert chunks[-1].usage.completion_tokens == N + 3
    price = cost(13, 6, N + 3, (2, 1, 5))
    check_billed(gateway, key, 2, [(13, 6, N + 3, price), (13, 6, N + 3, price)])


def test_anthropic_messages_and_stream_over_a_gemini_channel(gateway):
    key = new_key(gateway)
    client = anthropic_client(gateway, key)
    model = "gemini-2.5-flash"
    message = client.messages.create(
        model=model, max_tokens=40, system=SYSTEM, messages=[{"role": "user", "content": PROMPT}]
    )
    assert message.content[0].text == reply_text(model, N)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (13, N)
    with client.messages.stream(
        model=model, max_tokens=40, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == reply_text(model, N)
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (10, N)
    check_billed(
        gateway,
        key,
        2,
        [(13, 0, N, cost(13, 0, N, (2, 1, 5))), (10, 0, N, cost(10, 0, N, (2, 1, 5)))],
    )


@pytest.mark.parametrize(
    ("model", "prices", "path"),
    [
        ("gpt-cached-4o", (2, 1, 8), "/v1/chat/completions"),
        ("claude-cached-4-5", (3, 1, 15), "/v1/messages"),
    ],
)
def test_google_genai_over_openai_and_anthropic_channels(gateway, upstream, model, prices, path):
    key = new_key(gateway)
    client = genai_client(gateway, key)
    config = genai_types.GenerateContentConfig(system_instruction=SYSTEM, max_output_tokens=40)
    reply = client.models.generate_content(model=model, contents=PROMPT, config=config)
    assert upstream.requests[-1].path == path
    assert reply.text == reply_text(model, N)
    assert reply.candidates[0].finish_reason == genai_types.FinishReason.STOP
    meta = reply.usage_metadata
    assert (meta.prompt_token_count, meta.candidates_token_count) == (13, N)
    assert meta.cached_content_token_count == 6
    chunks = list(
        client.models.generate_content_stream(model=model, contents=PROMPT, config=config)
    )
    assert upstream.requests[-1].json["stream"] is True
    assert "".join(c.text or "" for c in chunks) == reply_text(model, N)
    assert chunks[-1].usage_metadata.prompt_token_count == 13
    assert chunks[-1].usage_metadata.candidates_token_count == N
    price = cost(13, 6, N, prices)
    check_billed(gateway, key, 2, [(13, 6, N, price), (13, 6, N, price)])


# ------------------------------------------------------------ routing, failover, cut streams


def test_native_first_then_failover_to_the_translated_channel(gateway, upstream):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    messages = [{"role": "user", "content": PROMPT}]
    client.chat.completions.create(model="both-model", messages=messages)
    assert [r.path for r in upstream.requests] == ["/v1/chat/completions"]
    upstream.fail_with(503, count=1)
    reply = client.chat.completions.create(model="both-model", messages=messages)
    assert reply.choices[0].message.content == reply_text("both-model", N)
    assert [r.path for r in upstream.requests][1:] == ["/v1/chat/completions", "/v1/messages"]
    check_billed(gateway, key, 2, [(10, 0, N, 10 + N)] * 2)


def test_a_translated_stream_cut_midway_ends_with_the_client_error_and_bills_what_was_sent(
    gateway, upstream
):
    key = new_key(gateway)
    upstream.cut_stream_after(2)
    received = ""
    client = anthropic_client(gateway, key)
    messages = [{"role": "user", "content": PROMPT}]
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(model="gpt-4o", max_tokens=64, messages=messages) as stream,
    ):
        for text in stream.text_stream:
            received += text
    assert received == "Hello from"
    (row,) = records(gateway, key, 1)
    assert row["status"] == 502 and row["estimated"]
    assert row["output_tokens"] == estimate_chars(len(received))
    assert row["cost"] == row["input_tokens"] * 2 + row["output_tokens"] * 8
    assert_ledger_consistent(database_url(gateway), KEY_ACCOUNTS[key])


def test_an_openai_stream_cut_midway_over_anthropic_ends_with_an_openai_error(gateway, upstream):
    key = new_key(gateway)
    upstream.cut_stream_after(2)
    received = ""
    with pytest.raises(openai.APIError):
        for chunk in openai_client(gateway, key).chat.completions.create(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": PROMPT}], stream=True
        ):
            received += "".join(c.delta.content or "" for c in chunk.choices)
    assert received == "Hello from"
    (row,) = records(gateway, key, 1)
    # message_start gave the exact input; the output is estimated from what was delivered
    assert (row["status"], row["input_tokens"], row["estimated"]) == (502, 10, True)
    assert row["output_tokens"] >= estimate_chars(len(received))


# ------------------------------------------------------------ the Responses API over chat


@pytest.mark.parametrize(
    ("model", "path", "prices"),
    [
        ("deepseek-chat", "/v1/chat/completions", (2, 2, 8)),
        ("claude-cached-4-5", "/v1/messages", (3, 1, 15)),
        ("gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent", (2, 1, 5)),
    ],
)
def test_responses_api_over_chat_anthropic_and_gemini_channels(
    gateway, upstream, model, path, prices
):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    reply = client.responses.create(
        model=model, instructions=SYSTEM, input=PROMPT, max_output_tokens=40, store=False
    )
    assert upstream.requests[-1].path == path
    assert reply.status == "completed"
    assert reply.output_text == reply_text(model, N)
    cached = 6 if "cached" in model else 0
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (13, N)
    assert reply.usage.input_tokens_details.cached_tokens == cached
    events = list(
        client.responses.create(model=model, instructions=SYSTEM, input=PROMPT, stream=True)
    )
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == reply_text(model, N)
    assert events[-1].response.output[0].content[0].text == text
    assert events[-1].response.usage.input_tokens == 13
    price = cost(13, cached, N, prices)
    check_billed(gateway, key, 2, [(13, cached, N, price)] * 2)


def test_previous_response_id_is_refused_over_a_translated_channel(gateway):
    key = new_key(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway, key).responses.create(
            model="claude-sonnet-4-5", input="hi", previous_response_id="resp_123"
        )
    assert caught.value.body["param"] == "previous_response_id"


def test_responses_websocket_turns_over_anthropic_and_chat_only_channels(gateway):
    key = new_key(gateway)
    terminal = {"response.completed", "response.incomplete", "response.failed", "error"}
    turns = []
    with openai_client(gateway, key).responses.connect() as connection:
        for model in ("claude-sonnet-4-5", "deepseek-chat"):
            connection.response.create(model=model, input=PROMPT)
            events = [connection.recv()]
            while events[-1].type not in terminal:
                events.append(connection.recv())
            turns.append((model, events))
    for model, events in turns:
        assert events[0].type == "response.created" and events[-1].type == "response.completed"
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == reply_text(model, N)
        assert events[-1].response.usage.input_tokens == 10
    check_billed(
        gateway,
        key,
        2,
        [(10, 0, N, cost(10, 0, N, (3, 1, 15))), (10, 0, N, cost(10, 0, N, (2, 2, 8)))],
    )


# ------------------------------------------------------------ token counting


def test_token_counts_for_translated_models(gateway, upstream):
    key = new_key(gateway)
    messages = [{"role": "user", "content": PROMPT}]
    client = anthropic_client(gateway, key)
    counter = client.messages
    counted = counter.with_raw_response.count_tokens(
        model="gemini-2.5-flash", system=SYSTEM, messages=messages
    )
    assert upstream.requests[-1].path == "/v1beta/models/gemini-2.5-flash:countTokens"
    assert upstream.requests[-1].json["generateContentRequest"]["model"] == (
        "models/gemini-2.5-flash"
    )
    assert counted.parse().input_tokens == 13 and "x-tokone-estimated" not in counted.headers
    estimated = counter.with_raw_response.count_tokens(model="gpt-4o", messages=messages)
    assert estimated.headers["x-tokone-estimated"] == "true"
    assert estimated.parse().input_tokens > 0
    google = genai_client(gateway, key)
    genai_count = google.models.count_tokens(model="claude-sonnet-4-5", contents=PROMPT)
    assert upstream.requests[-1].path == "/v1/messages/count_tokens"
    assert "max_tokens" not in upstream.requests[-1].json
    assert genai_count.total_tokens == 10
    oai = openai_client(gateway, key)
    responses_count = oai.responses.input_tokens.count(
        model="claude-sonnet-4-5", input=PROMPT, instructions=SYSTEM
    )
    assert responses_count.input_tokens == 13
    assert records(gateway, key, 4) and all(r["cost"] == 0 for r in records(gateway, key, 4))


def test_gemini_json_array_stream_over_an_openai_channel(gateway):
    key = new_key(gateway)
    response = httpx.post(
        f"{gateway.url}/v1beta/models/gpt-4o:streamGenerateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
        timeout=10,
    )
    assert response.status_code == 200
    chunks = response.json()
    assert isinstance(chunks, list)
    text = "".join(
        p.get("text", "") for c in chunks for p in c["candidates"][0]["content"]["parts"]
    )
    assert text == reply_text("gpt-4o", N)
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert chunks[-1]["usageMetadata"]["promptTokenCount"] == 10


# ------------------------------------------------------------ embeddings


def test_openai_embeddings_over_a_gemini_channel(gateway, upstream):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    result = client.embeddings.create(model="gemini-embedding-001", input=["one two", "three"])
    sent = upstream.requests[-1]
    assert sent.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert [r["content"]["parts"][0]["text"] for r in sent.json["requests"]] == ["one two", "three"]
    assert all(r["model"] == "models/gemini-embedding-001" for r in sent.json["requests"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) > 0  # decoded from base64 by the SDK
    floats = client.embeddings.create(
        model="gemini-embedding-001", input="one", encoding_format="float", dimensions=8
    )
    assert upstream.requests[-1].json["requests"][0]["outputDimensionality"] == 8
    assert isinstance(floats.data[0].embedding[0], float)
    rows = records(gateway, key, 2)
    assert [r["input_tokens"] for r in rows] == [
        result.usage.prompt_tokens,
        floats.usage.prompt_tokens,
    ]
    assert all(r["output_tokens"] == 0 and r["cost"] == r["input_tokens"] * 2 for r in rows)


def test_google_genai_embeddings_over_an_openai_channel(gateway, upstream):
    key = new_key(gateway)
    google = genai_client(gateway, key)
    result = google.models.embed_content(
        model="text-embedding-3-small",
        contents=["one two", "three four five"],
        config=genai_types.EmbedContentConfig(output_dimensionality=4),
    )
    sent = upstream.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.json["input"] == ["one two", "three four five"]
    assert sent.json["dimensions"] == 4
    assert len(result.embeddings) == 2 and len(result.embeddings[0].values) == 4
    (row,) = records(gateway, key, 1)
    assert (row["input_tokens"], row["estimated"], row["cost"]) == (5, False, 5)


# ------------------------------------------------------------ the fake upstream's tool calls

FUNCTIONS = [
    {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
    for n in ("lookup", "fetch")
]


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_openai_tool_calls_from_the_fake_upstream_through_translation(gateway, model):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    messages = [{"role": "user", "content": PROMPT}]
    reply = client.chat.completions.create(model=model, messages=messages, tools=FUNCTIONS)
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("lookup", {"model": model, "call": 0}),
        ("fetch", {"model": model, "call": 1}),
    ]
    pieces: dict[int, str] = {}
    for chunk in client.chat.completions.create(
        model=model, messages=messages, tools=FUNCTIONS, stream=True
    ):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                pieces[call.index] = pieces.get(call.index, "") + (call.function.arguments or "")
    assert [json.loads(pieces[i]) for i in sorted(pieces)] == [
        {"model": model, "call": 0},
        {"model": model, "call": 1},
    ]
    rows = records(gateway, key, 2)
    assert all(r["output_tokens"] == N and not r["estimated"] for r in rows)


def test_anthropic_tool_use_from_the_fake_openai_upstream_through_translation(gateway):
    key = new_key(gateway)
    client = anthropic_client(gateway, key)
    tools = [{"name": "lookup", "input_schema": {"type": "object"}}]
    messages = [{"role": "user", "content": PROMPT}]
    with client.messages.stream(
        model="gpt-4o", max_tokens=64, messages=messages, tools=tools
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    (use,) = final.content
    assert (use.name, use.input) == ("lookup", {"model": "gpt-4o", "call": 0})
    answer = client.messages.create(
        model="gpt-4o",
        max_tokens=64,
        tools=tools,
        messages=[
            *messages,
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "x"}],
            },
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert answer.content[0].text == reply_text("gpt-4o", N)
