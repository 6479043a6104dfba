"""Pure translation between OpenAI Chat Completions and Anthropic Messages: requests, replies,
usage and streams, with recorded-shape fixtures written from the SDKs' types and hypothesis
round trips (X -> Y -> X keeps messages, tools and parameters; usage maps exactly).
"""

from __future__ import annotations

import itertools
import json

import msgspec
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from openai.lib.streaming.chat._completions import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import TypeAdapter
from tokone.core.errors import GatewayError
from tokone.core.types import Call, Family
from tokone.core.upstream import StreamRelay
from tokone.plugins.translate import gemini, responses
from tokone.plugins.translate.base import TranslatedRelay
from tokone.plugins.translate.replies import (
    anthropic_usage_to_chat,
    chat_to_message,
    chat_usage_to_anthropic,
    message_to_chat,
)
from tokone.plugins.translate.requests import chat_to_messages, messages_to_chat
from tokone.plugins.translate.streams import ChatFromMessages, MessagesFromChat, OpenAIFraming
from tokone.providers.anthropic import MessagesStreamRelay
from tokone.providers.openai import ChatStreamRelay

# ------------------------------------------------------------------ hypothesis strategies

words = st.text(alphabet="abcdefghij xyz", min_size=1, max_size=12)
ids = st.from_regex(r"call_[a-z0-9]{6}", fullmatch=True)
names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
json_objects = st.dictionaries(
    names, st.one_of(st.integers(-5, 5), words, st.booleans()), max_size=3
)
images = st.sampled_from(["data:image/png;base64,iVBORw0KGgo=", "https://example.com/cat.jpg"])


def function_call(call_id: str, name: str, arguments: str) -> dict:
    """A chat completion's tool call."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


user_part = st.one_of(
    words.map(lambda t: {"type": "text", "text": t}),
    images.map(lambda u: {"type": "image_url", "image_url": {"url": u}}),
)
user_message = st.one_of(words, st.lists(user_part, min_size=1, max_size=3)).map(
    lambda c: {"role": "user", "content": c}
)
tool_call = st.tuples(ids, names, json_objects).map(
    lambda t: function_call(t[0], t[1], json.dumps(t[2], separators=(",", ":")))
)


@st.composite
def assistant_turn(draw) -> list[dict]:
    """An assistant message, with the tool messages answering its calls."""
    calls = draw(st.lists(tool_call, max_size=3, unique_by=lambda c: c["id"]))
    if not calls:
        return [{"role": "assistant", "content": draw(words)}]
    message = {
        "role": "assistant",
        "content": draw(st.one_of(st.none(), words)),
        "tool_calls": calls,
    }
    results = [{"role": "tool", "tool_call_id": c["id"], "content": draw(words)} for c in calls]
    return [message, *results]


@st.composite
def chat_requests(draw) -> dict:
    """Chat requests in the forms the translation keeps exactly."""
    messages: list[dict] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(words)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append(draw(user_message))
        if draw(st.booleans()):
            messages.extend(draw(assistant_turn()))
    body: dict = {"model": "m", "messages": messages, "max_tokens": draw(st.integers(1, 9999))}
    if draw(st.booleans()):
        body["stop"] = draw(st.lists(words, min_size=1, max_size=3))
    for key in ("temperature", "top_p"):
        if draw(st.booleans()):
            body[key] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        body["user"] = draw(names)
    tools = draw(st.lists(names, max_size=3, unique=True))
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": n,
                    "description": n,
                    "parameters": {"type": "object", "properties": {}},
                },
            }
            for n in tools
        ]
        body["tool_choice"] = draw(
            st.sampled_from(
                ["auto", "required", "none", {"type": "function", "function": {"name": tools[0]}}]
            )
        )
        if draw(st.booleans()) and body["tool_choice"] != "none":
            body["parallel_tool_calls"] = False
    if draw(st.booleans()):
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


@st.composite
def messages_requests(draw) -> dict:
    """Anthropic requests in the forms the translation keeps exactly."""
    chat = draw(chat_requests())
    chat.pop("parallel_tool_calls", None)
    body = chat_to_messages(chat)
    if draw(st.booleans()):
        body["system"] = [{"type": "text", "text": draw(words)}]
    return body


# ------------------------------------------------------------------ requests


@settings(max_examples=200, deadline=None)
@given(chat_requests())
def test_chat_request_round_trips_through_anthropic(body):
    assert messages_to_chat(chat_to_messages(body)) == body


@settings(max_examples=200, deadline=None)
@given(messages_requests())
def test_messages_request_round_trips_through_chat(body):
    assert chat_to_messages(messages_to_chat(body)) == body


def test_chat_request_in_anthropic_terms():
    body = {
        "model": "m",
        "messages": [
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    function_call("a", "f", '{"x":1}'),
                    function_call("b", "g", "{}"),
                ],
            },
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": "2"},
        ],
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "o", "schema": {"type": "object"}},
        },
        "seed": 7,
    }
    out = chat_to_messages(body, default_max_tokens=1000)
    assert out["system"] == "be brief"
    assert out["max_tokens"] == 1000
    assert out["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"},
    }
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "b", "name": "g", "input": {}},
    ]
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "1"},
            {"type": "tool_result", "tool_use_id": "b", "content": "2"},
        ],
    }
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}
    assert "seed" not in out


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 3}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"functions": []}, "functions"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_chat_fields_without_an_anthropic_form_are_refused_by_name(extra, param):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(GatewayError) as caught:
        chat_to_messages(body)
    assert caught.value.status == 400 and caught.value.param == param


def test_anthropic_request_in_chat_terms():
    body = {
        "model": "m",
        "max_tokens": 10,
        "system": "s",
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "q", "cache_control": {"type": "ephemeral"}}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "sig"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "bad",
                        "is_error": True,
                    },
                    {"type": "text", "text": "go on"},
                ],
            },
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stream": True,
    }
    out = messages_to_chat(body)
    assert out["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [function_call("t1", "f", '{"a":[1]}')],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Error: bad"},
        {"role": "user", "content": [{"type": "text", "text": "go on"}]},
    ]
    assert out["tool_choice"] == "required" and out["parallel_tool_calls"] is False
    assert out["stream_options"] == {"include_usage": True}
    assert "thinking" not in out


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "tools": [{"type": "bash_20250124", "name": "bash"}],
                "tool_choice": {"type": "tool", "name": "bash"},
            },
            "tool_choice.name",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"mcp_servers": []}, "mcp_servers"),
    ],
)
def test_anthropic_fields_without_a_chat_form_are_refused_by_name(body, param):
    with pytest.raises(GatewayError) as caught:
        messages_to_chat({"model": "m", "max_tokens": 5, "messages": [], **body})
    assert caught.value.param == param


# ------------------------------------------------------------------ usage and replies

counts = st.integers(0, 10**9)


@given(counts, counts, counts, counts)
def test_anthropic_usage_maps_to_chat_exactly(inp, written, read, out):
    chat = anthropic_usage_to_chat(
        {
            "input_tokens": inp,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
            "output_tokens": out,
        }
    )
    assert chat["prompt_tokens"] == inp + written + read
    assert chat["prompt_tokens_details"]["cached_tokens"] == read
    assert chat["completion_tokens"] == out
    assert chat["total_tokens"] == inp + written + read + out


@given(counts, counts, counts)
def test_chat_usage_maps_to_anthropic_and_back_exactly(prompt, cached, out):
    cached = min(cached, prompt)
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    anthropic_usage = chat_usage_to_anthropic(usage)
    assert anthropic_usage["input_tokens"] + anthropic_usage["cache_read_input_tokens"] == prompt
    assert anthropic_usage_to_chat(anthropic_usage) == usage


ANTHROPIC_REPLY = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [
        {"type": "thinking", "thinking": "let me see", "signature": "s"},
        {"type": "text", "text": "Calling."},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 7,
        "cache_creation_input_tokens": 2,
        "cache_read_input_tokens": 3,
        "output_tokens": 11,
    },
}


def test_anthropic_reply_as_a_chat_completion():
    chat = ChatCompletion.model_validate(message_to_chat(ANTHROPIC_REPLY, "alias"))
    message = chat.choices[0].message
    assert message.content == "Calling."
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == [
        ("toolu_1", "get_weather", {"city": "Paris"}),
        ("toolu_2", "get_time", {}),
    ]
    assert chat.choices[0].finish_reason == "tool_calls"
    assert message.model_extra["reasoning_content"] == "let me see"
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (12, 11)


def test_chat_reply_round_trips_through_anthropic():
    reply = chat_to_message(message_to_chat(ANTHROPIC_REPLY))
    Message.model_validate(reply)
    expected = {
        **ANTHROPIC_REPLY,
        "content": [
            {**ANTHROPIC_REPLY["content"][0], "signature": ""},
            *ANTHROPIC_REPLY["content"][1:],
        ],
    }
    expected["usage"] = {
        "input_tokens": 9,
        "output_tokens": 11,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3,
    }
    assert reply == expected


# ------------------------------------------------------------------ streams


def sse(events: list[tuple[str | None, dict | str]]) -> bytes:
    out = b""
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out += (
            (f"event: {name}\n" if name else "").encode() + b"data: " + payload.encode() + b"\n\n"
        )
    return out


def block_start(index: int, block: dict) -> tuple[str, dict]:
    """An Anthropic `content_block_start` event."""
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def block_delta(index: int, delta: dict) -> tuple[str, dict]:
    """An Anthropic `content_block_delta` event."""
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> tuple[str, dict]:
    """An Anthropic `content_block_stop` event."""
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def json_delta(index: int, partial: str) -> tuple[str, dict]:
    """An Anthropic tool-input delta."""
    return block_delta(index, {"type": "input_json_delta", "partial_json": partial})


ANTHROPIC_STREAM = sse(
    [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 20,
                        "cache_read_input_tokens": 4,
                        "cache_creation_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        ("ping", {"type": "ping"}),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Let me "}),
        block_delta(0, {"type": "text_delta", "text": "check."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}}),
        json_delta(1, ""),
        json_delta(1, '{"city": '),
        json_delta(1, '"Paris"}'),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "time", "input": {}}),
        json_delta(2, "{}"),
        block_stop(2),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 30},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
)


def chunk(choices: list[dict], **extra: object) -> tuple[None, dict]:
    """A chat completion chunk of the stream `c1`."""
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}
    return None, {**head, "choices": choices, **extra}


def delta_chunk(delta: dict, finish_reason: str | None = None) -> tuple[None, dict]:
    """A chunk with one delta for choice 0."""
    return chunk([{"index": 0, "delta": delta, "finish_reason": finish_reason}])


def tool_chunk(call: dict) -> tuple[None, dict]:
    """A chunk with one tool-call delta."""
    return delta_chunk({"tool_calls": [call]})


CHAT_STREAM = sse(
    [
        delta_chunk({"role": "assistant", "content": ""}),
        delta_chunk({"content": "Let me "}),
        delta_chunk({"content": "check."}),
        tool_chunk(
            {
                "index": 0,
                "id": "call_a",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ),
        tool_chunk({"index": 0, "function": {"arguments": '{"city": '}}),
        tool_chunk({"index": 0, "function": {"arguments": '"Paris"}'}}),
        tool_chunk(
            {
                "index": 1,
                "id": "call_b",
                "type": "function",
                "function": {"name": "time", "arguments": "{}"},
            }
        ),
        delta_chunk({}, "tool_calls"),
        chunk(
            [],
            usage={
                "prompt_tokens": 24,
                "completion_tokens": 30,
                "total_tokens": 54,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        ),
        (None, "[DONE]"),
    ]
)


def relay_bytes(relay: StreamRelay, data: bytes, size: int) -> bytes:
    """Feed `data` in pieces of `size` bytes, as the network would."""
    out = b"".join(relay.feed(data[i : i + size]) for i in range(0, len(data), size))
    return out + relay.finish()


def client_events(data: bytes) -> list[dict | str]:
    events = []
    for event in data.split(b"\n\n"):
        for line in event.split(b"\n"):
            if line.startswith(b"data: "):
                payload = line[6:].decode()
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_anthropic_stream_as_chat_chunks(size):
    call = Call(
        request_id="r", family=Family.ANTHROPIC, endpoint="messages", model="claude-x", stream=True
    )
    converter = OpenAIFraming(ChatFromMessages("alias", include_usage=True))
    relay = TranslatedRelay(call, MessagesStreamRelay(call), converter)
    events = client_events(relay_bytes(relay, ANTHROPIC_STREAM, size))
    assert events[-1] == "[DONE]"
    state = ChatCompletionStreamState()
    chunks = [ChatCompletionChunk.model_validate(e) for e in events[:-1]]
    for chunk in chunks:
        state.handle_chunk(chunk)
    final = state.get_final_completion()
    message = final.choices[0].message
    assert message.content == "Let me check."
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("toolu_a", "weather", '{"city": "Paris"}'),
        ("toolu_b", "time", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (24, 30)
    assert final.usage.prompt_tokens_details.cached_tokens == 4
    assert relay.finished and relay.saw_usage
    assert (
        relay.usage.input_tokens,
        relay.usage.cached_input_tokens,
        relay.usage.output_tokens,
    ) == (24, 4, 30)


@pytest.mark.parametrize("size", [1, 7, 10_000])
def test_chat_stream_as_anthropic_events(size):
    call = Call(
        request_id="r",
        family=Family.OPENAI,
        endpoint="chat.completions",
        model="gpt-x",
        stream=True,
    )
    relay = TranslatedRelay(call, ChatStreamRelay(call), MessagesFromChat("alias"))
    data = relay_bytes(relay, CHAT_STREAM, size)
    names = [line[7:].decode() for line in data.split(b"\n") if line.startswith(b"event: ")]
    events = client_events(data)
    assert [e["type"] for e in events] == names
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    adapter = TypeAdapter(RawMessageStreamEvent)
    snapshot, bufs = None, {}
    for event in events:
        snapshot = accumulate_event(
            event=adapter.validate_python(event), current_snapshot=snapshot, json_bufs=bufs
        )
    assert snapshot.content[0].text == "Let me check."
    assert [(b.id, b.name, b.input) for b in snapshot.content[1:]] == [
        ("call_a", "weather", {"city": "Paris"}),
        ("call_b", "time", {}),
    ]
    assert snapshot.stop_reason == "tool_use"
    usage = snapshot.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (20, 4, 30)
    assert relay.finished and (relay.usage.input_tokens, relay.usage.output_tokens) == (24, 30)


def test_reasoning_content_becomes_a_thinking_block():
    converter = MessagesFromChat("m")
    deltas = ({"reasoning_content": "hmm"}, {"content": "ok"})
    parts = [
        e
        for d in deltas
        for e in converter.event({"id": "x", "choices": [{"index": 0, "delta": d}]})
    ]
    out = b"".join(parts + converter.done())
    events = client_events(out)
    assert events[1]["content_block"]["type"] == "thinking"
    assert events[2]["delta"] == {"type": "thinking_delta", "thinking": "hmm"}
    assert events[4]["content_block"]["type"] == "text"


def test_an_upstream_error_event_becomes_the_client_family_error():
    out = OpenAIFraming(ChatFromMessages("m", False)).event(
        {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    )
    assert msgspec.json.decode(out[0][6:])["error"]["message"] == "busy"
    out = MessagesFromChat("m").event({"error": {"message": "boom"}})
    assert out[0].startswith(b"event: error\n")


# ------------------------------------------------------------------ Gemini and Responses


def gemini_canonical(body: dict) -> dict:
    """A chat request in the form a trip through Gemini keeps: text-only part lists as
    strings, no fields Gemini has no use for."""
    out = {
        k: v
        for k, v in body.items()
        if k not in ("user", "parallel_tool_calls", "stream", "stream_options", "model")
    }
    messages = []
    for message in body["messages"]:
        content = message.get("content")
        if isinstance(content, list) and all(p["type"] == "text" for p in content):
            message = {**message, "content": "".join(p["text"] for p in content)}
        messages.append(message)
    out["messages"] = messages
    return out


@settings(max_examples=200, deadline=None)
@given(chat_requests())
def test_chat_request_round_trips_through_gemini(body):
    roles = [m["role"] for m in body["messages"]]
    assume(all(not (a == b == "user") for a, b in itertools.pairwise(roles)))  # Gemini merges
    expected = gemini_canonical(body)
    assert gemini.gemini_to_chat(gemini.chat_to_gemini(body)) == expected


@given(counts, counts, counts, counts)
def test_gemini_usage_maps_to_chat_and_back_exactly(prompt, cached, candidates, thoughts):
    cached = min(cached, prompt)
    meta = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "thoughtsTokenCount": thoughts,
        "cachedContentTokenCount": cached,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    chat = gemini.gemini_usage_to_chat(meta)
    assert chat["completion_tokens"] == candidates + thoughts
    assert chat["completion_tokens_details"]["reasoning_tokens"] == thoughts
    back = gemini.chat_usage_to_gemini(chat)
    expected = {
        k: v
        for k, v in meta.items()
        if v or k in ("promptTokenCount", "candidatesTokenCount", "totalTokenCount")
    }
    assert back == expected


def test_gemini_function_calls_get_stable_ids_matched_to_their_responses():
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "a", "args": {"x": 1}}},
                    {"functionCall": {"name": "b", "args": {}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "b", "response": {"result": "B"}}},
                    {"functionResponse": {"name": "a", "response": {"value": 2}}},
                ],
            },
        ]
    }
    chat = gemini.gemini_to_chat(body)
    calls = chat["messages"][1]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert chat["messages"][2:] == [
        {"role": "tool", "tool_call_id": "call_1", "content": "B"},
        {"role": "tool", "tool_call_id": "call_0", "content": '{"value":2}'},
    ]


def test_responses_request_in_chat_terms():
    body = {
        "model": "m",
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "ok"}],
            },
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "shell",
                "arguments": '{"cmd":"ls"}',
            },
            {
                "type": "custom_tool_call",
                "call_id": "c2",
                "name": "apply_patch",
                "input": "*** Begin",
            },
            {
                "type": "function_call",
                "call_id": "c3",
                "name": "read",
                "namespace": "fs",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "a b"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "done"},
        ],
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object"}},
            {"type": "custom", "name": "apply_patch", "description": "patch"},
            {
                "type": "namespace",
                "name": "fs",
                "description": "files",
                "tools": [{"type": "function", "name": "read"}],
            },
            {"type": "web_search"},
        ],
        "store": False,
        "reasoning": {"effort": "medium"},
        "include": ["reasoning.encrypted_content"],
    }
    chat = responses.responses_to_chat(body)
    assert chat["messages"][:3] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": "ok",
            "tool_calls": [
                function_call("c1", "shell", '{"cmd":"ls"}'),
                function_call("c2", "apply_patch", '{"input":"*** Begin"}'),
                function_call("c3", "fs__read", "{}"),
            ],
        },
    ]
    assert [t["function"]["name"] for t in chat["tools"]] == ["shell", "apply_patch", "fs__read"]
    reply = {
        "id": "x",
        "choices": [
            {
                "message": {
                    "content": None,
                    "tool_calls": [
                        function_call("k", "apply_patch", '{"input":"P"}'),
                        function_call("j", "fs__read", "{}"),
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 2,
            "completion_tokens_details": {"reasoning_tokens": 1},
        },
    }
    out = responses.chat_to_response(reply, body, "m")
    assert out["output"][0]["type"] == "custom_tool_call" and out["output"][0]["input"] == "P"
    assert (out["output"][1]["name"], out["output"][1]["namespace"]) == ("read", "fs")
    assert out["usage"]["output_tokens_details"]["reasoning_tokens"] == 1
    with pytest.raises(GatewayError) as caught:
        responses.responses_to_chat({**body, "previous_response_id": "resp_1"})
    assert caught.value.param == "previous_response_id"
