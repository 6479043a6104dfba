"""The OpenAI Responses API over a Chat Completions upstream (and, through the chat form, over
Anthropic and Gemini channels): requests, whole replies and the `response.*` event stream.

Kept: `instructions` and system/developer items (as system messages), message items
(`input_text`, `input_image`, `output_text`), `function_call` / `function_call_output` items
(ids kept: `call_id`), function tools (flat form), namespaces of them (flattened to
`<namespace>__<name>` and split again in the output) and custom tools (Codex's freeform
`apply_patch`: a function with one string argument `input`, turned back into a
`custom_tool_call`), `tool_choice`, `parallel_tool_calls`, `max_output_tokens`,
`temperature`, `top_p`, `text.format` (json_schema / json_object), `user`. Dropped on
purpose: hosted tools offered in `tools` (`web_search`, `file_search`, ...: the upstream has
none, so the model answers without them; forcing one is refused), `reasoning` settings and
`reasoning` input items (the chat form has no reasoning state to hand back), `store`,
`include`, `metadata`, `client_metadata`, `prompt_cache_key`, `safety_identifier`,
`service_tier`, `truncation`, `text.verbosity`. `previous_response_id` (and `conversation`)
is refused with a 400: the gateway keeps no turns, so the client must send the whole input
(Codex CLI does, with `store = false`). Usage: ``input_tokens = prompt_tokens``,
``cached_tokens``, ``output_tokens = completion_tokens``, ``reasoning_tokens``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tokone.plugins.translate.base import (
    JSON,
    FromChatChunks,
    dumps,
    openai_event,
    refuse,
    tool_call,
)
from tokone.plugins.translate.replies import count

RESPONSES_DROPPED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "reasoning",
        "store",
        "include",
        "metadata",
        "client_metadata",
        "prompt_cache_key",
        "safety_identifier",
        "service_tier",
        "truncation",
    }
)
RESPONSES_FIELDS = frozenset(
    {
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_output_tokens",
        "temperature",
        "top_p",
        "text",
        "user",
        "previous_response_id",
        "conversation",
    }
)
SEPARATOR = "__"
"""Joins a namespace and a tool name into one chat function name."""
CUSTOM_SCHEMA = {
    "type": "object",
    "properties": {"input": {"type": "string"}},
    "required": ["input"],
}
"""The parameters of a custom (freeform) tool carried as a chat function."""


def responses_to_chat(body: JSON) -> JSON:
    """A Responses API request as an OpenAI chat request."""
    for key in body:
        if key not in RESPONSES_FIELDS and key not in RESPONSES_DROPPED:
            raise refuse(key, "no Chat Completions counterpart")
    for key in ("previous_response_id", "conversation"):
        if body.get(key):
            raise refuse(key, "this model's upstream keeps no turns; send the whole input")
    messages: list[JSON] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input") or []
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for i, item in enumerate(items):
        input_item(messages, item, f"input[{i}]")
    out: JSON = {"messages": messages}
    if body.get("max_output_tokens") is not None:
        out["max_tokens"] = body["max_output_tokens"]
    for key in ("temperature", "top_p", "user", "parallel_tool_calls"):
        if body.get(key) is not None:
            out[key] = body[key]
    fmt = (body.get("text") or {}).get("format")
    if fmt and fmt.get("type") == "json_schema":
        schema = {"name": fmt.get("name", "output"), "schema": fmt.get("schema") or {}}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        out["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt and fmt.get("type") == "json_object":
        out["response_format"] = {"type": "json_object"}
    tools = [
        chat_tool(tool, where)
        for where, tool in flat_tools(body)
        if tool.get("type") in ("function", "custom")  # hosted tools: the upstream has none
    ]
    if tools:
        out["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        if choice.get("type") not in ("function", "custom"):
            raise refuse("tool_choice", "only function tools can be forced")
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    elif choice is not None:
        out["tool_choice"] = choice
    return out


def input_item(messages: list[JSON], item: JSON, where: str) -> None:
    """Append one Responses input item to the chat messages."""
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role", "user")
        content = item.get("content")
        if role == "assistant":
            text = content if isinstance(content, str) else item_text(content, where)
            messages.append({"role": "assistant", "content": text})
        else:
            messages.append({"role": role, "content": user_content(content, where)})
    elif kind in ("function_call", "custom_tool_call"):
        arguments = (
            item.get("arguments") or "{}"
            if kind == "function_call"
            else dumps({"input": item.get("input", "")})
        )
        name = item.get("name", "")
        if item.get("namespace"):
            name = item["namespace"] + SEPARATOR + name
        call = tool_call(item.get("call_id", ""), name, arguments)
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output", "")
        text = output if isinstance(output, str) else item_text(output, where)
        messages.append({"role": "tool", "tool_call_id": item.get("call_id", ""), "content": text})
    elif kind != "reasoning":
        raise refuse(f"{where}.type", f"{kind!r} items have no Chat Completions form")


def item_text(content: Any, where: str) -> str:
    """The text of output/input text parts."""
    texts = []
    for j, part in enumerate(content or []):
        if part.get("type") not in ("output_text", "input_text", "text", "refusal"):
            raise refuse(f"{where}.content[{j}].type", "only text is allowed here")
        texts.append(part.get("text") or part.get("refusal") or "")
    return "".join(texts)


def user_content(content: Any, where: str) -> Any:
    """A user/system message's content as chat content (text parts joined to a string)."""
    if isinstance(content, str):
        return content
    parts: list[JSON] = []
    for j, part in enumerate(content or []):
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image" and part.get("image_url"):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise refuse(f"{where}.content[{j}].type", f"{kind!r} parts have no chat form")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def flat_tools(request: JSON) -> list[tuple[str, JSON]]:
    """The request's tools with namespaces flattened: (where, tool), a namespaced tool named
    `<namespace>__<name>` (chat has no namespaces)."""
    out = []
    for i, tool in enumerate(request.get("tools") or []):
        if tool.get("type") != "namespace":
            out.append((f"tools[{i}]", tool))
            continue
        prefix = tool.get("name", "") + SEPARATOR
        for j, inner in enumerate(tool.get("tools") or []):
            named = {**inner, "name": prefix + inner.get("name", "")}
            out.append((f"tools[{i}].tools[{j}]", named))
    return out


class ToolNames:
    """What a chat function name stands for in the request: a custom tool, a namespaced one."""

    def __init__(self, request: JSON) -> None:
        tools = [tool for _, tool in flat_tools(request)]
        self.custom = frozenset(t.get("name", "") for t in tools if t.get("type") == "custom")
        self.spaces: dict[str, tuple[str, str]] = {}
        for tool in request.get("tools") or []:
            if tool.get("type") == "namespace":
                for inner in tool.get("tools") or []:
                    name = inner.get("name", "")
                    self.spaces[tool.get("name", "") + SEPARATOR + name] = (tool["name"], name)


def chat_tool(tool: JSON, where: str) -> JSON:
    """A Responses tool as a chat function tool (custom tools take one string `input`)."""
    kind = tool.get("type")
    if kind == "function":
        function: JSON = {"name": tool.get("name", "")}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        return {"type": "function", "function": function}
    if kind == "custom":
        description = tool.get("description") or ""
        return {
            "type": "function",
            "function": {
                "name": tool.get("name", ""),
                "description": description,
                "parameters": CUSTOM_SCHEMA,
            },
        }
    raise refuse(f"{where}.type", f"{kind!r} tools have no chat form")


def responses_usage(usage: JSON) -> JSON:
    """An OpenAI chat `usage` object as a Responses `usage` object."""
    prompt = count(usage.get("prompt_tokens"))
    completion = count(usage.get("completion_tokens"))
    cached = count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    reasoning = count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": min(cached, prompt)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": min(reasoning, completion)},
        "total_tokens": prompt + completion,
    }


def call_item(call_id: str, name: str, arguments: str, names: ToolNames, status: str) -> JSON:
    """A function_call output item (a custom_tool_call for a custom tool, with its namespace
    for a namespaced one)."""
    custom = name in names.custom
    space = names.spaces.get(name)
    extra = {"namespace": space[0]} if space else {}
    name = space[1] if space else name
    if custom:
        try:
            value = json.loads(arguments or "{}").get("input", "")
        except (ValueError, AttributeError):
            value = arguments
        return {
            "type": "custom_tool_call",
            "id": f"ctc_{call_id}",
            "call_id": call_id,
            "name": name,
            "input": value,
            "status": status,
            **extra,
        }
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
        **extra,
    }


def response_object(request: JSON, rid: str, model: str, status: str, output: list[JSON]) -> JSON:
    """A Responses `response` object echoing the request's settings."""
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "text": request.get("text") or {"format": {"type": "text"}},
        "metadata": request.get("metadata") or {},
        "usage": None,
    }


def chat_to_response(reply: JSON, request: JSON, client_model: str) -> JSON:
    """An OpenAI chat completion as a Responses `response` object."""
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    rid = "resp_" + str(reply.get("id", ""))
    output: list[JSON] = []
    if message.get("content"):
        part = {"type": "output_text", "text": message["content"], "annotations": []}
        output.append(
            {
                "type": "message",
                "id": f"msg_{reply.get('id', '')}",
                "status": "completed",
                "role": "assistant",
                "content": [part],
            }
        )
    names = ToolNames(request)
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            call_item(
                call.get("id", ""),
                function.get("name", ""),
                function.get("arguments", ""),
                names,
                "completed",
            )
        )
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    out = response_object(request, rid, reply.get("model") or client_model, status, output)
    out["usage"] = responses_usage(reply.get("usage") or {})
    return out


class ResponsesFromChat(FromChatChunks):
    """OpenAI chat chunk objects -> the Responses event sequence, with sequence numbers.

    `response.created` and `response.in_progress` first; then per output item
    `response.output_item.added`, its deltas (`response.output_text.delta` inside a
    `content_part`, or `response.function_call_arguments.delta`), its `.done` events and
    `response.output_item.done`; at the end `response.completed` (or `response.incomplete`
    at the length limit) with the output and the usage.
    """

    def __init__(self, request: JSON, model: str) -> None:
        self.request = request
        self.model = model
        self.names = ToolNames(request)
        self.sequence = 0
        self.rid = ""
        self.started = False
        self.output: list[JSON] = []
        self.open: JSON | None = None
        """The output item being streamed (a message or a function call)."""
        self.calls: dict[int, JSON] = {}
        self.finish: str | None = None
        self.usage: JSON = {}

    def emit(self, kind: str, **fields: Any) -> bytes:
        """One Responses SSE event (`event:` line and JSON with its sequence number)."""
        payload = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return b"event: " + kind.encode() + b"\n" + openai_event(payload)

    def start(self, data: JSON) -> list[bytes]:
        """`response.created` and `response.in_progress`, once."""
        if self.started:
            return []
        self.started = True
        self.rid = "resp_" + str(data.get("id") or "")
        self.model = data.get("model") or self.model
        snapshot = response_object(self.request, self.rid, self.model, "in_progress", [])
        return [
            self.emit("response.created", response=snapshot),
            self.emit("response.in_progress", response=snapshot),
        ]

    def close(self) -> list[bytes]:
        """The `.done` events of the open item."""
        item, self.open = self.open, None
        if item is None:
            return []
        index = len(self.output)
        self.output.append(item)
        if item["type"] == "message":
            text = item["content"][0]["text"]
            part = {"type": "output_text", "text": text, "annotations": []}
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            item["status"] = "completed"
            return [
                self.emit("response.output_text.done", **common, text=text, logprobs=[]),
                self.emit("response.content_part.done", **common, part=part),
                self.emit("response.output_item.done", output_index=index, item=item),
            ]
        done = call_item(item["call_id"], item["name"], item["arguments"], self.names, "completed")
        self.output[-1] = done
        events = []
        if done["type"] == "function_call":
            events.append(
                self.emit(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
            )
        else:
            events.append(
                self.emit(
                    "response.custom_tool_call_input.done",
                    item_id=done["id"],
                    output_index=index,
                    input=done["input"],
                )
            )
        events.append(self.emit("response.output_item.done", output_index=index, item=done))
        return events

    def text(self, piece: str) -> list[bytes]:
        """A text delta (opening the message item when needed)."""
        out: list[bytes] = []
        index = len(self.output)
        if self.open is None or self.open["type"] != "message":
            out = self.close()
            index = len(self.output)
            self.open = {
                "type": "message",
                "id": f"msg_{self.rid[5:]}_{index}",
                "status": "in_progress",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "", "annotations": []}],
            }
            added = {**self.open, "content": []}
            out.append(self.emit("response.output_item.added", output_index=index, item=added))
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(
                self.emit(
                    "response.content_part.added",
                    item_id=self.open["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
            )
        self.open["content"][0]["text"] += piece
        out.append(
            self.emit(
                "response.output_text.delta",
                item_id=self.open["id"],
                output_index=index,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        )
        return out

    def tool(self, call: JSON) -> list[bytes]:
        """A tool-call piece: a new function_call item, or arguments for the open one."""
        out: list[bytes] = []
        function = call.get("function") or {}
        if call.get("index", 0) not in self.calls:
            out = self.close()
            call_id = call.get("id", "")
            item = {
                "type": "function_call",
                "id": f"fc_{call_id}",
                "call_id": call_id,
                "name": function.get("name", ""),
                "arguments": "",
                "status": "in_progress",
            }
            self.calls[call.get("index", 0)] = item
            self.open = item
            added = call_item(call_id, item["name"], "", self.names, "in_progress")
            out.append(
                self.emit("response.output_item.added", output_index=len(self.output), item=added)
            )
        item = self.calls[call.get("index", 0)]
        piece = function.get("arguments") or ""
        if piece:
            item["arguments"] += piece
            if item is self.open and item["name"] not in self.names.custom:
                out.append(
                    self.emit(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=len(self.output),
                        delta=piece,
                    )
                )
        return out

    def error(self, message: str) -> list[bytes]:
        """An `error` event."""
        return [self.emit("error", code="upstream_error", message=message, param=None)]

    def delta(self, delta: JSON) -> list[bytes]:
        """The Responses events for a chat delta's text and tool-call pieces."""
        out: list[bytes] = []
        if delta.get("content"):
            out.extend(self.text(delta["content"]))
        for call in delta.get("tool_calls") or []:
            out.extend(self.tool(call))
        return out

    def done(self) -> list[bytes]:
        """The closing events and `response.completed` (or `.incomplete`), at `[DONE]`."""
        out = self.start({}) + self.close()
        status = "incomplete" if self.finish == "length" else "completed"
        final = response_object(self.request, self.rid, self.model, status, self.output)
        final["usage"] = responses_usage(self.usage)
        out.append(self.emit(f"response.{status}", response=final))
        return out
