"""Tool calls across families end to end: each official SDK against a gateway whose channel
speaks another family, in front of a small upstream that calls tools in its family's wire
format (written from the API references: OpenAI `tool_calls` with streamed
`function.arguments` pieces, Anthropic `tool_use` blocks with `input_json_delta`, Gemini
whole `functionCall` parts).

The upstream calls two tools in parallel (`get_weather {"city": "Paris"}` and `get_time {}`)
when the request offers tools and its last turn is not a tool result; otherwise it answers
"It is sunny." and echoes nothing. It always reports the same usage, so billing is checked
exactly: 21 input tokens (5 of them cache reads), 9 output tokens.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from aiohttp import web
from conftest import KEY_ACCOUNTS, Gateway, new_key, records, start_gateway
from google import genai
from google.genai import types as genai_types
from ledger_checks import assert_ledger_consistent, database_url

INPUT, CACHED, OUTPUT = 21, 5, 9
CALLS = [("get_weather", {"city": "Paris"}), ("get_time", {})]
ANSWER = "It is sunny."
TOOLS_CHAT = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} tool",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    for name, _ in CALLS
]
TOOLS_ANTHROPIC = [
    {
        "name": name,
        "description": f"{name} tool",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    }
    for name, _ in CALLS
]


def sse(payload: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return (head + f"data: {data}\n\n").encode()


def pieces(text: str) -> list[str]:
    """A JSON text cut in 3-character pieces, as upstreams stream arguments."""
    return [text[i : i + 3] for i in range(0, len(text), 3)] or [""]


class ToolUpstream:
    """The tool-calling upstream (OpenAI, Anthropic and Gemini paths) on a background loop."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.runner: web.AppRunner | None = None

    def start(self) -> ToolUpstream:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)
        return self

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1beta/models/{action}", self.gemini)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)

    def calls_for(self, offered: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """The tool calls to make when the request offers the tools `offered`."""
        return CALLS

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    async def open_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        return response

    # OpenAI Chat Completions
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body))
        calls = body.get("tools") and body["messages"][-1]["role"] != "tool"
        plan = self.calls_for([t["function"]["name"] for t in body.get("tools") or []])
        usage = {
            "prompt_tokens": INPUT,
            "completion_tokens": OUTPUT,
            "total_tokens": INPUT + OUTPUT,
            "prompt_tokens_details": {"cached_tokens": CACHED},
        }
        tool_calls = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for i, (name, args) in enumerate(plan)
        ]
        finish = "tool_calls" if calls else "stop"
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if calls else ANSWER}
            if calls:
                message["tool_calls"] = tool_calls
            return web.json_response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }
            )
        response = await self.open_stream(request)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
            )

        await response.write(chunk({"role": "assistant", "content": ""}))
        if calls:
            for i, call in enumerate(tool_calls):
                function = call["function"]
                head = {**call, "index": i, "function": {"name": function["name"], "arguments": ""}}
                await response.write(chunk({"tool_calls": [head]}))
                for piece in pieces(function["arguments"]):
                    delta = {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}
                    await response.write(chunk(delta))
        else:
            for piece in ANSWER.split(" "):
                await response.write(chunk({"content": piece + " "}))
        await response.write(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            tail = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1}
            await response.write(
                sse({**tail, "model": body["model"], "choices": [], "usage": usage})
            )
        await response.write(sse("[DONE]"))
        return response

    # Anthropic Messages
    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body))
        last = body["messages"][-1]["content"]
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        calls = body.get("tools") and not answered
        plan = self.calls_for([t["name"] for t in body.get("tools") or []])
        blocks: list[dict[str, Any]] = [
            {"type": "text", "text": "Let me check." if calls else ANSWER}
        ]
        if calls:
            blocks += [
                {"type": "tool_use", "id": f"toolu_{i}", "name": name, "input": args}
                for i, (name, args) in enumerate(plan)
            ]
        usage = {
            "input_tokens": INPUT - CACHED,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": CACHED,
            "output_tokens": OUTPUT,
        }
        stop = "tool_use" if calls else "end_turn"
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "stop_reason": stop,
            "stop_sequence": None,
        }
        if not body.get("stream"):
            return web.json_response({**message, "content": blocks, "usage": usage})
        response = await self.open_stream(request)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        await response.write(sse({"type": "message_start", "message": start}, "message_start"))
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                opened, delta = (
                    {"type": "text", "text": ""},
                    {"type": "text_delta", "text": block["text"]},
                )
                deltas = [delta]
            else:
                opened = {**block, "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": p}
                    for p in pieces(json.dumps(block["input"]))
                ]
            start_event = {"type": "content_block_start", "index": index, "content_block": opened}
            await response.write(sse(start_event, "content_block_start"))
            for delta in deltas:
                event = {"type": "content_block_delta", "index": index, "delta": delta}
                await response.write(sse(event, "content_block_delta"))
            await response.write(
                sse({"type": "content_block_stop", "index": index}, "content_block_stop")
            )
        delta_event = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": OUTPUT},
        }
        await response.write(sse(delta_event, "message_delta"))
        await response.write(sse({"type": "message_stop"}, "message_stop"))
        return response

    # Gemini generateContent / streamGenerateContent (alt=sse)
    async def gemini(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body))
        last = body["contents"][-1]["parts"]
        calls = body.get("tools") and not any("functionResponse" in p for p in last)
        offered = [
            f["name"] for t in body.get("tools") or [] for f in t.get("functionDeclarations") or []
        ]
        parts = (
            [
                {"functionCall": {"name": name, "args": args}}
                for name, args in self.calls_for(offered)
            ]
            if calls
            else [{"text": ANSWER}]
        )
        usage = {
            "promptTokenCount": INPUT,
            "cachedContentTokenCount": CACHED,
            "candidatesTokenCount": OUTPUT,
            "totalTokenCount": INPUT + OUTPUT,
        }
        reply = {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": usage,
            "modelVersion": "gemini-tools",
            "responseId": "resp-1",
        }
        if request.match_info["action"].endswith(":generateContent"):
            return web.json_response(reply)
        response = await self.open_stream(request)
        await response.write(sse(reply))
        return response


@pytest.fixture(scope="module")
def tools_upstream() -> Iterator[ToolUpstream]:
    up = ToolUpstream().start()
    yield up
    up.stop()


TOOL_CHANNELS = """
[[providers]]
name = "claude"
adapter = "anthropic"
base_url = "{base}"
models = ["claude-tools"]

[[providers]]
name = "oai"
adapter = "openai"
base_url = "{base}/v1"
models = ["gpt-tools"]

[[providers]]
name = "oai-chat"
adapter = "openai-chat"
base_url = "{base}/v1"
models = ["chatonly-tools"]

[[providers]]
name = "google"
adapter = "gemini"
base_url = "{base}"
models = ["gemini-tools"]

[prices."*-tools"]
input = 3.0
output = 15.0
cached_input = 1.0
"""


def start_tools_gateway(directory: Path, upstream: ToolUpstream) -> Gateway:
    """A gateway with one channel of each family (`claude-`, `gpt-`, `chatonly-`,
    `gemini-tools`) on `upstream`, priced per token; stopped by the caller."""
    return start_gateway(directory, TOOL_CHANNELS.replace("{base}", upstream.base_url))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, tools_upstream: ToolUpstream):
    started = start_tools_gateway(tmp_path_factory.mktemp("tools"), tools_upstream)
    yield started
    started.stop()


PRICE = (INPUT - CACHED) * 3 + CACHED * 1 + OUTPUT * 15


def check_billed(gateway, key: str, calls: int) -> None:
    rows = records(gateway, key, calls)
    assert [
        (r["input_tokens"], r["cached_input_tokens"], r["output_tokens"], r["cost"]) for r in rows
    ] == [(INPUT, CACHED, OUTPUT, PRICE)] * calls
    state = assert_ledger_consistent(database_url(gateway), KEY_ACCOUNTS[key])
    assert sum(state.captures.values()) == PRICE * calls


def openai_client(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def anthropic_client(gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def stream_tool_calls(stream) -> tuple[list[tuple[str, str, dict]], str | None, Any]:
    """(id, name, arguments) of the calls an OpenAI chat stream assembled, its finish, usage."""
    calls: dict[int, dict[str, str]] = {}
    finish, usage = None, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] = call.function.name or slot["name"]
                    slot["arguments"] += call.function.arguments or ""
    found = [(c["id"], c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    return found, finish, usage


@pytest.mark.parametrize(
    ("model", "prefix"), [("claude-tools", "toolu_"), ("gemini-tools", "call_")]
)
def test_openai_tools_whole_and_streamed_then_results(gateway, tools_upstream, model, prefix):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather and time?"}]
    reply = client.chat.completions.create(
        model=model, messages=messages, tools=TOOLS_CHAT, tool_choice="auto"
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls
    ]
    assert [(n, a) for _, n, a in calls] == CALLS
    assert all(i.startswith(prefix) for i, _, _ in calls)
    assert len({i for i, _, _ in calls}) == 2

    streamed, finish, usage = stream_tool_calls(
        client.chat.completions.create(
            model=model,
            messages=messages,
            tools=TOOLS_CHAT,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert finish == "tool_calls"
    assert [(n, a) for _, n, a in streamed] == CALLS
    assert (usage.prompt_tokens, usage.completion_tokens) == (INPUT, OUTPUT)

    messages.append(choice.message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": i, "content": f"{n}: ok"} for i, n, _ in calls]
    final = client.chat.completions.create(model=model, messages=messages, tools=TOOLS_CHAT)
    assert final.choices[0].message.content.strip() == ANSWER
    _path, sent = tools_upstream.requests[-1]
    if model.startswith("claude"):
        assert sent["messages"][-2]["content"][-2:] == [
            {"type": "tool_use", "id": i, "name": n, "input": a} for i, n, a in calls
        ]
        assert sent["messages"][-1] == {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": i, "content": f"{n}: ok"}
                for i, n, _ in calls
            ],
        }
    else:
        assert sent["contents"][-1]["parts"] == [
            {"functionResponse": {"id": i, "name": n, "response": {"result": f"{n}: ok"}}}
            for i, n, _ in calls
        ]
    check_billed(gateway, key, 3)


@pytest.mark.parametrize("model", ["gpt-tools", "gemini-tools"])
def test_anthropic_tool_use_whole_and_streamed_then_results(gateway, tools_upstream, model):
    key = new_key(gateway)
    client = anthropic_client(gateway, key)
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather and time?"}]
    message = client.messages.create(
        model=model, max_tokens=100, messages=messages, tools=TOOLS_ANTHROPIC
    )
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert [(b.name, b.input) for b in uses] == CALLS
    with client.messages.stream(
        model=model, max_tokens=100, messages=messages, tools=TOOLS_ANTHROPIC
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [(b.name, b.input) for b in final.content if b.type == "tool_use"] == CALLS
    assert final.usage.input_tokens + final.usage.cache_read_input_tokens == INPUT
    assert final.usage.output_tokens == OUTPUT

    messages.append({"role": "assistant", "content": [b.model_dump() for b in uses]})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": b.id, "content": f"{b.name}: ok"}
                for b in uses
            ],
        }
    )
    done = client.messages.create(
        model=model, max_tokens=100, messages=messages, tools=TOOLS_ANTHROPIC
    )
    assert done.stop_reason == "end_turn"
    assert done.content[-1].text.strip() == ANSWER
    _path, sent = tools_upstream.requests[-1]
    if model.startswith("gpt"):
        assert [m["role"] for m in sent["messages"][-3:]] == ["assistant", "tool", "tool"]
        assert [m["tool_call_id"] for m in sent["messages"][-2:]] == [b.id for b in uses]
    check_billed(gateway, key, 3)


CLAUDE_CODE_REQUEST = {
    # the shape Claude Code sends (system blocks with cache_control, metadata.user_id,
    # thinking, context_management, tools with input_schema, streaming, max_tokens 32000)
    "model": "gpt-tools",
    "max_tokens": 32000,
    "stream": True,
    "metadata": {"user_id": "user_abc_account__session_123"},
    "system": [
        {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
        {"type": "text", "text": "Be concise.", "cache_control": {"type": "ephemeral"}},
    ],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>context</system-reminder>"},
                {"type": "text", "text": "weather?", "cache_control": {"type": "ephemeral"}},
            ],
        }
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a command",
            "input_schema": {
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
                "additionalProperties": False,
                "$schema": "http://json-schema.org/draft-07/schema#",
            },
        }
    ],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
}


def test_claude_code_request_shape_streams_over_an_openai_channel(gateway, tools_upstream):
    key = new_key(gateway)
    client = anthropic_client(gateway, key)
    body = dict(CLAUDE_CODE_REQUEST)
    body.pop("stream")
    with client.beta.messages.stream(
        **body, betas=["claude-code-20250219", "interleaved-thinking-2025-05-14"]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.name for b in final.content if b.type == "tool_use"] == ["get_weather", "get_time"]
    path, sent = tools_upstream.requests[-1]
    assert path == "/v1/chat/completions"
    assert sent["messages"][0]["role"] == "system"
    assert sent["tools"][0]["function"]["name"] == "Bash"
    assert sent["user"] == "user_abc_account__session_123"
    assert sent["stream_options"] == {"include_usage": True}
    check_billed(gateway, key, 1)


def test_google_genai_function_calls_over_openai_and_anthropic(gateway):
    key = new_key(gateway)
    client = genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=gateway.url))
    declarations = [
        genai_types.FunctionDeclaration(
            name=name, description=name, parameters_json_schema={"type": "object"}
        )
        for name, _ in CALLS
    ]
    config = genai_types.GenerateContentConfig(
        tools=[genai_types.Tool(function_declarations=declarations)]
    )
    for model in ("gpt-tools", "claude-tools"):
        reply = client.models.generate_content(model=model, contents="weather?", config=config)
        assert [(c.name, c.args) for c in reply.function_calls] == CALLS
        chunks = list(
            client.models.generate_content_stream(model=model, contents="weather?", config=config)
        )
        streamed = [c for chunk in chunks for c in chunk.function_calls or []]
        assert [(c.name, c.args) for c in streamed] == CALLS
        assert chunks[-1].usage_metadata.prompt_token_count == INPUT
    check_billed(gateway, key, 4)


TOOLS_RESPONSES = [
    {
        "type": "function",
        "name": name,
        "description": f"{name} tool",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": False,
    }
    for name, _ in CALLS
]


@pytest.mark.parametrize("model", ["chatonly-tools", "claude-tools", "gemini-tools"])
def test_responses_function_calls_whole_and_streamed_then_outputs(gateway, tools_upstream, model):
    key = new_key(gateway)
    client = openai_client(gateway, key)
    items: list[dict[str, Any]] = [{"role": "user", "content": "weather and time?"}]
    reply = client.responses.create(model=model, input=items, tools=TOOLS_RESPONSES, store=False)
    calls = [o for o in reply.output if o.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == CALLS
    events = list(
        client.responses.create(model=model, input=items, tools=TOOLS_RESPONSES, stream=True)
    )
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = [e.item for e in events if e.type == "response.output_item.done"]
    streamed = [(i.name, json.loads(i.arguments)) for i in done if i.type == "function_call"]
    assert streamed == CALLS
    if not model.startswith("gemini"):  # Gemini sends a call whole: no argument deltas
        assert any(e.type == "response.function_call_arguments.delta" for e in events)
    final = events[-1].response
    assert final.usage.input_tokens == INPUT and final.usage.output_tokens == OUTPUT
    items += [c.model_dump(exclude_none=True) for c in calls]
    items += [{"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls]
    answer = client.responses.create(model=model, input=items, tools=TOOLS_RESPONSES)
    assert answer.output_text.strip().endswith(ANSWER)
    _path, sent = tools_upstream.requests[-1]
    if model == "chatonly-tools":
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool", "tool"]
        assert [c["id"] for c in sent["messages"][1]["tool_calls"]] == [c.call_id for c in calls]
    check_billed(gateway, key, 3)
