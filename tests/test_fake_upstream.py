"""Checks that the official SDKs parse ``tests/fake_upstream`` when pointed straight at it."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

try:
    import httpx2
except ImportError:  # older SDK releases use plain httpx
    httpx2 = None

# tests/ is on sys.path under pytest (rootdir-less test dir, and conftest adds it too).
from fake_upstream import FakeUpstream, count_input_tokens, reply_pieces, reply_text

N = 16
# The SDKs' HTTP stacks differ (openai/anthropic ship on "httpx2", google-genai on httpx or
# aiohttp): a cut stream surfaces as any of these.
_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    openai.APIError,
    anthropic.APIError,
    genai_errors.APIError,
    httpx.HTTPError,
    *((httpx2.HTTPError,) if httpx2 is not None else ()),
)
PROMPT = "one two three four five six seven"  # 7 words -> 7 input tokens


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """One fake upstream for the whole module, reset before every test."""
    up = FakeUpstream(host="127.0.0.1", port=0).start()
    try:
        yield up
    finally:
        up.stop()


@pytest.fixture(autouse=True)
def _reset(upstream: FakeUpstream) -> None:
    upstream.reset()


@pytest.fixture
def oai(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    """An OpenAI client without retries."""
    with openai.OpenAI(base_url=upstream.base_url + "/v1", api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
def claude(upstream: FakeUpstream) -> Iterator[anthropic.Anthropic]:
    """An Anthropic client without retries."""
    with anthropic.Anthropic(base_url=upstream.base_url, api_key="ak-test", max_retries=0) as c:
        yield c


@pytest.fixture
def gem(upstream: FakeUpstream) -> Iterator[genai.Client]:
    """A google-genai client (Gemini Developer API mode)."""
    client = genai.Client(
        api_key="gk-test", http_options=genai_types.HttpOptions(base_url=upstream.base_url)
    )
    yield client
    client.close()


def _post(url: str, body: Any) -> Any:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


# --------------------------------------------------------------------------- helpers


def test_reply_pieces_and_token_counting() -> None:
    assert reply_pieces("m", 1) == ("Hello from m!",)
    assert reply_pieces("m", 2) == ("Hello", " from m!")
    assert reply_pieces("m", 3) == ("Hello", " from", " m!")
    pieces = reply_pieces("gpt-4o", 16)
    assert len(pieces) == 16
    assert "".join(pieces).startswith("Hello from gpt-4o!")
    assert len(reply_text("gpt-4o", 16).split()) == 16
    body = {
        "model": "ignored words here",
        "system": "be brief",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "a b c"}, {"type": "image"}]},
            {"role": "assistant", "content": "d"},
        ],
        "tools": [{"name": "x", "description": "not counted at all"}],
    }
    assert count_input_tokens(body) == 6
    assert count_input_tokens({}) == 1
    assert count_input_tokens({"input": [[1, 2, 3]]}) == 3


# --------------------------------------------------------------------------- OpenAI


def test_openai_chat_plain(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.object == "chat.completion"
    assert r.choices[0].message.content == reply_text("gpt-4o-mini", N)
    assert r.choices[0].finish_reason == "stop"
    assert r.service_tier == "default"
    assert r.usage is not None
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (7, N, 7 + N)
    assert r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.usage.completion_tokens_details is not None
    assert r.usage.completion_tokens_details.reasoning_tokens == 0
    rec = upstream.requests[-1]
    assert (rec.method, rec.path) == ("POST", "/v1/chat/completions")
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.json["model"] == "gpt-4o-mini"


def test_openai_chat_cached_and_service_tier(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="gpt-4o-cached",
        messages=[{"role": "user", "content": PROMPT}],
        service_tier="flex",
    )
    assert r.service_tier == "flex"
    assert r.usage is not None and r.usage.prompt_tokens_details is not None
    assert r.usage.prompt_tokens_details.cached_tokens == 3


def test_openai_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    contents = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(contents) == N
    assert "".join(contents) == reply_text("gpt-4o", N)
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, N, 7 + N)
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.service_tier == "default" for c in chunks)


def test_openai_chat_stream_without_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len(chunks) == N + 2


def test_openai_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="gpt-3.5-turbo-instruct", prompt=PROMPT)
    assert r.object == "text_completion"
    assert r.choices[0].text == reply_text("gpt-3.5-turbo-instruct", N)
    assert r.usage is not None and r.usage.prompt_tokens == 7 and r.usage.completion_tokens == N
    chunks = list(
        oai.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt=PROMPT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == reply_text("gpt-3.5-turbo-instruct", N)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7 + N


def test_openai_embeddings_base64_default(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="text-embedding-3-small", input=["a b", "c"])
    assert upstream.requests[-1].json["encoding_format"] == "base64"
    assert len(r.data) == 2
    assert r.data[0].embedding == [(j + 1) / 16 for j in range(8)]
    assert r.data[1].embedding == [1 + (j + 1) / 16 for j in range(8)]
    assert r.usage.prompt_tokens == 3 and r.usage.total_tokens == 3


def test_openai_embeddings_float_and_raw_base64(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    r = oai.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert r.data[0].embedding == [(j + 1) / 16 for j in range(8)]
    raw = _post(
        upstream.base_url + "/v1/embeddings",
        {"model": "e", "input": "x", "encoding_format": "base64"},
    )
    emb = raw["data"][0]["embedding"]
    assert isinstance(emb, str)
    assert list(struct.unpack("<8f", base64.b64decode(emb))) == [(j + 1) / 16 for j in range(8)]


def test_openai_models(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert ids == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
    assert oai.models.retrieve("gpt-4o").id == "gpt-4o"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("nope")


def test_openai_responses_plain(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="gpt-4o-cached", input=PROMPT, instructions="be nice")
    assert r.status == "completed"
    assert r.output_text == reply_text("gpt-4o-cached", N)
    assert r.usage is not None
    assert r.usage.input_tokens == 9
    assert r.usage.input_tokens_details.cached_tokens == 4
    assert r.usage.output_tokens == N
    assert r.usage.output_tokens_details.reasoning_tokens == 0
    assert r.usage.total_tokens == 9 + N
    assert r.service_tier == "default"


def test_openai_responses_stream_create(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="gpt-4o", input=PROMPT, stream=True))
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * N,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == reply_text("gpt-4o", N)
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == N


def test_openai_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o", input=PROMPT, service_tier="priority") as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == reply_text("gpt-4o", N)
    assert final.output_text == text
    assert final.service_tier == "priority"
    assert final.usage is not None and final.usage.input_tokens == 7


def test_openai_responses_input_tokens(oai: openai.OpenAI) -> None:
    r = oai.responses.input_tokens.count(model="gpt-4o", input=PROMPT)
    assert r.object == "response.input_tokens"
    assert r.input_tokens == 7


def _ws_turn(conn: Any) -> list[Any]:
    events = []
    for event in conn:
        events.append(event)
        if event.type in ("response.completed", "error"):
            break
    return events


def test_openai_responses_websocket(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    if not hasattr(oai.responses, "connect"):
        pytest.skip("installed openai SDK has no responses.connect()")
    pytest.importorskip("websockets")
    with oai.responses.connect() as conn:
        conn.response.create(model="gpt-4o", input=PROMPT)
        first = _ws_turn(conn)
        conn.response.create(model="gpt-4o-mini", input="hi", stream_id="lane-1")
        second = _ws_turn(conn)
    for events, model in ((first, "gpt-4o"), (second, "gpt-4o-mini")):
        assert events[0].type == "response.created"
        assert events[-1].type == "response.completed"
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == reply_text(model, N)
    assert first[-1].response.usage.input_tokens == 7
    assert second[-1].response.usage.input_tokens == 1
    assert all(e.stream_id == "lane-1" for e in second)
    ws_recs = [r for r in upstream.requests if r.method == "WS"]
    assert [r.json["model"] for r in ws_recs] == ["gpt-4o", "gpt-4o-mini"]
    assert ws_recs[0].headers["authorization"] == "Bearer sk-test"


def test_openai_websocket_failures(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    if not hasattr(oai.responses, "connect"):
        pytest.skip("installed openai SDK has no responses.connect()")
    upstream.fail_ws_turn(429)
    with oai.responses.connect() as conn:
        conn.response.create(model="gpt-4o", input="hi")
        events = _ws_turn(conn)
        assert events[-1].type == "error" and events[-1].status == 429
        conn.response.create(model="gpt-4o", input="hi")
        assert _ws_turn(conn)[-1].type == "response.completed"
    upstream.cut_stream_after(2)
    got: list[str] = []
    from websockets.exceptions import ConnectionClosedError

    with pytest.raises(ConnectionClosedError), oai.responses.connect() as conn:
        conn.response.create(model="gpt-4o", input="hi")
        for event in conn:
            got.append(event.type)
    assert got.count("response.output_text.delta") == 2
    assert "response.completed" not in got


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_messages_plain(upstream: FakeUpstream, claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert m.content[0].type == "text"
    assert m.content[0].text == reply_text("claude-sonnet-4-6", N)
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == 9
    assert m.usage.output_tokens == N
    assert m.usage.cache_read_input_tokens == 0
    assert m.usage.cache_creation_input_tokens == 0
    rec = upstream.requests[-1]
    # anthropic>=2 sends the key as "Authorization: Bearer"; older SDKs used x-api-key.
    assert "ak-test" in (rec.headers.get("x-api-key"), rec.headers.get("authorization", "")[7:])
    assert "anthropic-version" in rec.headers


def test_anthropic_messages_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-cached",
        max_tokens=100,
        messages=[{"role": "user", "content": PROMPT}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == reply_text("claude-cached", N)
    assert final.content[0].type == "text" and final.content[0].text == text
    assert final.usage.output_tokens == N
    assert final.usage.cache_read_input_tokens == 3
    assert final.usage.input_tokens == 4


def test_anthropic_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(
            model="claude-x",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        )
    )
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-1] == "message_stop"
    assert types.count("content_block_delta") == N
    start = events[0]
    assert start.type == "message_start" and start.message.usage.output_tokens == 1


def test_anthropic_count_tokens_and_models(claude: anthropic.Anthropic) -> None:
    r = claude.messages.count_tokens(
        model="claude-sonnet-4-6", system="x y", messages=[{"role": "user", "content": PROMPT}]
    )
    assert r.input_tokens == 9
    beta = claude.beta.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": PROMPT}]
    )
    assert beta.input_tokens == 7
    models = list(claude.models.list())
    assert [m.id for m in models] == ["claude-sonnet-4-6", "claude-haiku-4-5"]
    assert models[0].type == "model"


# --------------------------------------------------------------------------- Gemini


def test_gemini_generate_content(upstream: FakeUpstream, gem: genai.Client) -> None:
    r = gem.models.generate_content(model="gemini-2.5-flash", contents=PROMPT)
    assert r.text == reply_text("gemini-2.5-flash", N)
    assert r.candidates is not None and r.candidates[0].finish_reason == "STOP"
    u = r.usage_metadata
    assert u is not None
    assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (7, N, 7 + N)
    assert u.thoughts_token_count is None and u.cached_content_token_count is None
    rec = upstream.requests[-1]
    # google-genai 3.x defaults to api_version "v1"; older releases used "v1beta".
    assert rec.path in (
        "/v1/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:generateContent",
    )
    assert rec.headers["x-goog-api-key"] == "gk-test"


def test_gemini_thinking_cached(gem: genai.Client) -> None:
    r = gem.models.generate_content(model="gemini-thinking-cached", contents=PROMPT)
    u = r.usage_metadata
    assert u is not None
    assert u.thoughts_token_count == 3
    assert u.cached_content_token_count == 3
    assert u.total_token_count == 7 + N + 3


def test_gemini_stream(upstream: FakeUpstream, gem: genai.Client) -> None:
    chunks = list(gem.models.generate_content_stream(model="gemini-2.5-pro", contents=PROMPT))
    assert len(chunks) == N
    assert "".join(c.text or "" for c in chunks) == reply_text("gemini-2.5-pro", N)
    last = chunks[-1].usage_metadata
    assert last is not None and last.candidates_token_count == N and last.prompt_token_count == 7
    assert upstream.requests[-1].query == "alt=sse"


def test_gemini_count_tokens_and_embeddings(gem: genai.Client) -> None:
    assert gem.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT).total_tokens == 7
    r = gem.models.embed_content(model="gemini-embedding-001", contents=["a", "b c"])
    assert r.embeddings is not None and len(r.embeddings) == 2
    assert r.embeddings[0].values == [(j + 1) / 16 for j in range(8)]
    names = [m.name for m in gem.models.list()]
    assert "models/gemini-2.5-flash" in names


def test_gemini_v1_and_single_embed(upstream: FakeUpstream) -> None:
    base = upstream.base_url + "/v1/models/"
    body = {"contents": [{"role": "user", "parts": [{"text": "a b"}]}]}
    r = _post(base + "gemini-2.5-flash:generateContent?key=k", body)
    assert r["usageMetadata"]["promptTokenCount"] == 2
    e = _post(base + "gemini-embedding-001:embedContent", {"content": {"parts": [{"text": "a"}]}})
    assert len(e["embedding"]["values"]) == 8
    arr = _post(base + "gemini-2.5-flash:streamGenerateContent", body)
    assert isinstance(arr, list) and len(arr) == N


# --------------------------------------------------------------------------- failures


def test_fail_with_openai(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    upstream.fail_with(500)
    with pytest.raises(openai.InternalServerError) as exc:
        oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert exc.value.body["type"] == "server_error"  # type: ignore[index]
    upstream.fail_with(429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as rl:
        oai.responses.create(model="m", input="hi")
    assert rl.value.response.headers["retry-after"] == "7"
    assert rl.value.code == "rate_limit_exceeded"
    # queue exhausted -> next call succeeds
    oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert len(upstream.requests) == 3


def test_fail_with_queues_and_count(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    upstream.fail_with(503, count=2)
    upstream.fail_with(400)
    msgs: Any = [{"role": "user", "content": "hi"}]
    for exc_type in (
        openai.InternalServerError,
        openai.InternalServerError,
        openai.BadRequestError,
    ):
        with pytest.raises(exc_type):
            oai.chat.completions.create(model="m", messages=msgs)
    oai.chat.completions.create(model="m", messages=msgs)


def test_fail_with_anthropic_and_gemini(
    upstream: FakeUpstream, claude: anthropic.Anthropic, gem: genai.Client
) -> None:
    upstream.fail_with(529)
    with pytest.raises(anthropic.APIStatusError) as exc:
        claude.messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert exc.value.status_code == 529
    assert exc.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    upstream.fail_with(503)
    with pytest.raises(genai_errors.ServerError) as gexc:
        gem.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert gexc.value.code == 503 and gexc.value.status == "UNAVAILABLE"


def test_require_key() -> None:
    with FakeUpstream(require_key="good") as up:
        bad_oai = openai.OpenAI(base_url=up.base_url + "/v1", api_key="bad", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad_oai.models.list()
        good_oai = openai.OpenAI(base_url=up.base_url + "/v1", api_key="good", max_retries=0)
        assert len(good_oai.models.list().data) == 3
        bad_claude = anthropic.Anthropic(base_url=up.base_url, api_key="bad", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as exc:
            bad_claude.messages.create(
                model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            )
        assert exc.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        bad_gem = genai.Client(
            api_key="bad", http_options=genai_types.HttpOptions(base_url=up.base_url)
        )
        with pytest.raises(genai_errors.ClientError) as gexc:
            bad_gem.models.generate_content(model="gemini-2.5-flash", contents="hi")
        assert gexc.value.code == 401 and gexc.value.status == "UNAUTHENTICATED"
        good_gem = genai.Client(
            api_key="good", http_options=genai_types.HttpOptions(base_url=up.base_url)
        )
        assert good_gem.models.generate_content(model="g", contents="hi").text


def test_hang(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    upstream.hang(2.0)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    assert time.monotonic() - t0 < 1.5
    oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_cut_stream_openai(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    upstream.cut_stream_after(3)
    got: list[str] = []
    with pytest.raises(_TRANSPORT_ERRORS):
        for chunk in oai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert got == list(reply_pieces("m", N)[:3])
    # non-streaming requests never consume the cut
    upstream.cut_stream_after(0)
    oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(_TRANSPORT_ERRORS):
        list(oai.responses.create(model="m", input="hi", stream=True))


def test_cut_stream_anthropic_and_gemini(
    upstream: FakeUpstream, claude: anthropic.Anthropic, gem: genai.Client
) -> None:
    upstream.cut_stream_after(N)  # all content, but no message_delta / message_stop
    text: list[str] = []
    with (
        pytest.raises(_TRANSPORT_ERRORS),
        claude.messages.stream(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        text.extend(stream.text_stream)
    assert "".join(text) == reply_text("c", N)
    upstream.cut_stream_after(2)
    got: list[str] = []
    with pytest.raises(_TRANSPORT_ERRORS):
        for c in gem.models.generate_content_stream(model="g", contents="hi"):
            got.append(c.text or "")
    assert len(got) == 2


def test_stall_and_delay(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    upstream.stall_stream_after(2, 1.0)
    msgs: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.APITimeoutError):
        list(
            oai.with_options(timeout=httpx.Timeout(5.0, read=0.3)).chat.completions.create(
                model="m", messages=msgs, stream=True
            )
        )
    upstream.stall_stream_after(1, 0.3)
    t0 = time.monotonic()
    chunks = list(oai.chat.completions.create(model="m", messages=msgs, stream=True))
    assert time.monotonic() - t0 >= 0.3
    assert len(chunks) == N + 2
    upstream.delay_chunks(0.02)
    t0 = time.monotonic()
    list(oai.chat.completions.create(model="m", messages=msgs, stream=True))
    assert time.monotonic() - t0 >= N * 0.02
    upstream.delay_chunks(0)


def test_paced_streams_in_every_family(
    upstream: FakeUpstream, oai: openai.OpenAI, claude: anthropic.Anthropic, gem: genai.Client
) -> None:
    upstream.pace(0.2, 0.01)  # first chunk after 0.2 s, then N - 1 chunks 10 ms apart
    msgs: Any = [{"role": "user", "content": "hi"}]
    t0 = time.monotonic()
    stream = oai.chat.completions.create(model="m", messages=msgs, stream=True)
    text = ""
    first = None
    for chunk in stream:
        piece = chunk.choices[0].delta.content if chunk.choices else None
        if piece and first is None:
            first = time.monotonic() - t0
        text += piece or ""
    total = time.monotonic() - t0
    assert text == reply_text("m", N)
    assert first is not None and first >= 0.2
    assert total >= 0.2 + (N - 1) * 0.01
    t0 = time.monotonic()
    with claude.messages.stream(
        model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
    ) as reply:
        assert "".join(reply.text_stream) == reply_text("c", N)
    assert time.monotonic() - t0 >= 0.2 + (N - 1) * 0.01
    t0 = time.monotonic()
    got = "".join(
        c.text or "" for c in gem.models.generate_content_stream(model="g", contents="hi")
    )
    assert got == reply_text("g", N)
    assert time.monotonic() - t0 >= 0.2 + (N - 1) * 0.01
    upstream.clear_failures()
    t0 = time.monotonic()
    list(oai.chat.completions.create(model="m", messages=msgs, stream=True))
    assert time.monotonic() - t0 < 0.2


def test_http_control_endpoints(upstream: FakeUpstream, oai: openai.OpenAI) -> None:
    assert _post(upstream.base_url + "/_control", {"action": "fail_with", "status": 502})["ok"]
    with pytest.raises(openai.InternalServerError):
        oai.models.list()
    oai.models.list()
    with urllib.request.urlopen(upstream.base_url + "/_requests", timeout=5) as resp:
        recs = json.loads(resp.read())
    assert [r["path"] for r in recs] == ["/v1/models", "/v1/models"]
    assert recs[0]["headers"]["authorization"] == "Bearer sk-test"
    assert _post(upstream.base_url + "/_reset", {})["ok"]
    assert upstream.requests == []
    with pytest.raises(urllib.error.HTTPError):
        _post(upstream.base_url + "/_control", {"action": "nope"})


def test_record_off() -> None:
    with FakeUpstream(record=False) as up:
        oai = openai.OpenAI(base_url=up.base_url + "/v1", api_key="k", max_retries=0)
        oai.models.list()
        assert up.requests == []


def test_script_mode() -> None:
    script = Path(__file__).with_name("fake_upstream")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--port", "0", "--no-record", "--chunks", "4"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on ")
        port = int(line.split()[-1])
        oai = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        r = oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert r.choices[0].message.content == reply_text("m", 4)
        assert r.usage is not None and r.usage.completion_tokens == 4
    finally:
        proc.terminate()
        proc.wait(10)


def test_async_clients(upstream: FakeUpstream) -> None:
    """The async SDK stacks (httpx2 async, google-genai on aiohttp) parse the streams too."""

    async def run() -> None:
        async with openai.AsyncOpenAI(
            base_url=upstream.base_url + "/v1", api_key="k", max_retries=0
        ) as oai:
            stream = await oai.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
            assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7
        async with anthropic.AsyncAnthropic(
            base_url=upstream.base_url, api_key="k", max_retries=0
        ) as claude:
            async with claude.messages.stream(
                model="c", max_tokens=5, messages=[{"role": "user", "content": PROMPT}]
            ) as s:
                final = await s.get_final_message()
            assert final.usage.output_tokens == N and final.usage.input_tokens == 7
        gem = genai.Client(
            api_key="k", http_options=genai_types.HttpOptions(base_url=upstream.base_url)
        )
        parts = [
            c.text or ""
            async for c in await gem.aio.models.generate_content_stream(model="g", contents="hi")
        ]
        assert "".join(parts) == reply_text("g", N)
        await gem.aio.aclose()

    asyncio.run(run())
