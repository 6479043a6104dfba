"""Gemini generateContent <-> OpenAI Chat Completions: requests, replies, usage and streams.

OpenAI chat is the pivot for Gemini: an Anthropic client of a Gemini channel (and a Gemini
client of an Anthropic channel) goes through the chat form (see `plugins.translate`), so
each family needs one pair of converters, not one per other family.

Kept: `systemInstruction` <-> system messages, history (`model` <-> `assistant`), text,
images (`inlineData` <-> base64 `data:` URLs, `fileData` <-> URLs), function declarations
(`parametersJsonSchema` carries the JSON schema as is), `functionCall` / `functionResponse`
parts <-> tool calls / tool messages (ids kept when Gemini gives one, else `call_<n>`; a
function response needs the name, found from the assistant call with that id),
`toolConfig` <-> `tool_choice`, `stopSequences`, `maxOutputTokens`, `temperature`, `topP`,
`responseMimeType` + `responseJsonSchema` <-> `response_format`, thought parts <->
`reasoning_content`. Refused with a 400: `candidateCount > 1` / `n > 1` and the fields
without a counterpart. Usage: ``prompt_tokens = promptTokenCount + toolUsePromptTokenCount``,
``cached_tokens = cachedContentTokenCount``, ``completion_tokens = candidatesTokenCount +
thoughtsTokenCount`` with ``reasoning_tokens = thoughtsTokenCount`` (and back).
"""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec
from tokone.plugins.translate.base import JSON, StreamConverter, dumps, refuse, tool_call
from tokone.plugins.translate.replies import chat_completion, count, parse_arguments
from tokone.plugins.translate.requests import image_source, named_function

FINISH_FROM_GEMINI = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
"""Gemini `finishReason` -> OpenAI `finish_reason` (others: `stop`)."""
FINISH_TO_GEMINI = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}
"""OpenAI `finish_reason` -> Gemini `finishReason` (`tool_calls` is a STOP with calls)."""
CHAT_DROPPED = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "store",
        "metadata",
        "service_tier",
        "user",
        "prompt_cache_key",
        "safety_identifier",
        "reasoning_effort",
        "parallel_tool_calls",
    }
)
"""Chat fields a Gemini upstream has no use for (Gemini may call functions in parallel)."""
CHAT_FIELDS = frozenset(
    {
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "temperature",
        "top_p",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "response_format",
    }
)
GEMINI_FIELDS = frozenset(
    {
        "contents",
        "systemInstruction",
        "system_instruction",
        "tools",
        "toolConfig",
        "generationConfig",
        "model",
    }
)
GEMINI_DROPPED = frozenset({"safetySettings", "labels"})
"""Gemini fields an OpenAI-compatible upstream has no use for, dropped."""
GENERATION_FIELDS = {
    "maxOutputTokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
"""Gemini `generationConfig` keys -> chat keys, carried as they are."""


# ---------------------------------------------------------------- chat -> Gemini request


def chat_to_gemini(body: JSON) -> JSON:
    """An OpenAI chat request as a Gemini generateContent request."""
    for key in body:
        if key not in CHAT_FIELDS and key not in CHAT_DROPPED:
            raise refuse(key, "Gemini's generateContent has no such parameter")
    if (body.get("n") or 1) != 1:
        raise refuse("n", "translated calls return one candidate")
    system: list[JSON] = []
    contents: list[JSON] = []
    names: dict[str, str] = {}
    for i, message in enumerate(body.get("messages") or []):
        role, content, where = message.get("role"), message.get("content"), f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend({"text": t} for t in texts(content, where))
        elif role == "user":
            add(contents, "user", user_parts(content, where))
        elif role == "assistant":
            parts: list[JSON] = [{"text": t} for t in texts(content, where) if t]
            for k, call in enumerate(message.get("tool_calls") or []):
                function = call.get("function") or {}
                try:
                    args = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    raise refuse(
                        f"{where}.tool_calls[{k}].function.arguments", "not JSON"
                    ) from None
                names[call.get("id", "")] = function.get("name", "")
                parts.append(
                    {
                        "functionCall": {
                            "id": call.get("id", ""),
                            "name": function.get("name", ""),
                            "args": args,
                        }
                    }
                )
            add(contents, "model", parts)
        elif role == "tool":
            call_id = message.get("tool_call_id", "")
            text = content if isinstance(content, str) else "".join(texts(content, where))
            response = {"id": call_id, "name": names.get(call_id, ""), "response": {"result": text}}
            add(contents, "user", [{"functionResponse": response}])
        else:
            raise refuse(f"{where}.role", f"role {role!r} has no Gemini counterpart")
    out: JSON = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config: JSON = {}
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if cap is not None:
        config["maxOutputTokens"] = cap
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    for gemini_key, chat_key in GENERATION_FIELDS.items():
        if chat_key != "max_tokens" and body.get(chat_key) is not None:
            config[gemini_key] = body[chat_key]
    fmt = body.get("response_format")
    if fmt and fmt.get("type") != "text":
        config["responseMimeType"] = "application/json"
        if fmt.get("type") == "json_schema":
            config["responseJsonSchema"] = (fmt.get("json_schema") or {}).get("schema") or {}
    if config:
        out["generationConfig"] = config
    tools = body.get("tools")
    if tools:
        out["tools"] = [{"functionDeclarations": [declaration(t, i) for i, t in enumerate(tools)]}]
    if body.get("tool_choice") is not None:
        out["toolConfig"] = {"functionCallingConfig": calling_config(body["tool_choice"])}
    return out


def add(contents: list[JSON], role: str, parts: list[JSON]) -> None:
    """Append a turn, merging it into the previous one of the same role (Gemini alternates)."""
    if contents and contents[-1]["role"] == role:
        contents[-1]["parts"].extend(parts)
    else:
        contents.append({"role": role, "parts": parts})


def texts(content: Any, where: str) -> list[str]:
    """The text of a chat content that may only hold text."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out = []
    for j, part in enumerate(content):
        if part.get("type") != "text":
            raise refuse(f"{where}.content[{j}].type", "only text is allowed here")
        out.append(part.get("text", ""))
    return out


def user_parts(content: Any, where: str) -> list[JSON]:
    """A chat user content as Gemini parts (images inline or by URI)."""
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[JSON] = []
    for j, part in enumerate(content or []):
        kind = part.get("type")
        if kind == "text":
            parts.append({"text": part.get("text", "")})
        elif kind == "image_url":
            source = image_source((part.get("image_url") or {}).get("url", ""))
            if source["type"] == "base64":
                parts.append(
                    {"inlineData": {"mimeType": source["media_type"], "data": source["data"]}}
                )
            else:
                parts.append({"fileData": {"fileUri": source["url"]}})
        else:
            raise refuse(f"{where}.content[{j}].type", f"{kind!r} parts have no Gemini form")
    return parts


def declaration(tool: JSON, i: int) -> JSON:
    """An OpenAI function tool as a Gemini function declaration."""
    out, function = named_function(tool, i, "Gemini")
    if function.get("parameters"):
        out["parametersJsonSchema"] = function["parameters"]
    return out


def calling_config(choice: Any) -> JSON:
    """OpenAI `tool_choice` as a Gemini `functionCallingConfig`."""
    if choice in ("auto", "required", "none"):
        return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {
            "mode": "ANY",
            "allowedFunctionNames": [(choice.get("function") or {}).get("name", "")],
        }
    raise refuse("tool_choice", "Gemini takes auto, required, none or one function")


# ---------------------------------------------------------------- Gemini -> chat request


def gemini_to_chat(body: JSON) -> JSON:
    """A Gemini generateContent request as an OpenAI chat request."""
    for key in body:
        if key not in GEMINI_FIELDS and key not in GEMINI_DROPPED:
            raise refuse(key, "OpenAI Chat Completions has no such parameter")
    messages: list[JSON] = []
    system = body.get("systemInstruction") or body.get("system_instruction")
    if system:
        text = "".join(p.get("text", "") for p in system.get("parts") or [])
        messages.append({"role": "system", "content": text})
    ids = CallIds()
    for i, content in enumerate(body.get("contents") or []):
        messages.extend(gemini_turn_to_chat(content, f"contents[{i}]", ids))
    out: JSON = {"messages": messages}
    config = body.get("generationConfig") or {}
    for key in config:
        if key not in GENERATION_FIELDS and key not in GENERATION_OTHER:
            raise refuse(f"generationConfig.{key}", "OpenAI Chat Completions has no such setting")
    if (config.get("candidateCount") or 1) != 1:
        raise refuse("generationConfig.candidateCount", "translated calls return one candidate")
    for gemini_key, chat_key in GENERATION_FIELDS.items():
        if config.get(gemini_key) is not None:
            out[chat_key] = config[gemini_key]
    if config.get("stopSequences"):
        out["stop"] = list(config["stopSequences"])
    if config.get("responseMimeType") == "application/json":
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        out["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
            if schema
            else {"type": "json_object"}
        )
    functions = []
    for i, tool in enumerate(body.get("tools") or []):
        extra = set(tool) - {"functionDeclarations", "function_declarations"}
        if extra:
            raise refuse(f"tools[{i}].{sorted(extra)[0]}", "only function declarations translate")
        for fn in tool.get("functionDeclarations") or tool.get("function_declarations") or []:
            function: JSON = {"name": fn.get("name", "")}
            if fn.get("description") is not None:
                function["description"] = fn["description"]
            schema = fn.get("parametersJsonSchema") or fn.get("parameters")
            if schema:
                function["parameters"] = schema
            functions.append({"type": "function", "function": function})
    if functions:
        out["tools"] = functions
    mode_config = (body.get("toolConfig") or {}).get("functionCallingConfig")
    if mode_config:
        out["tool_choice"] = chat_tool_choice(mode_config)
    return out


GENERATION_OTHER = frozenset(
    {
        "stopSequences",
        "candidateCount",
        "responseMimeType",
        "responseJsonSchema",
        "responseSchema",
        "thinkingConfig",
        "topK",
    }
)
"""generationConfig keys handled (or dropped: thinkingConfig, topK) besides GENERATION_FIELDS."""


class CallIds:
    """Tool-call ids for Gemini function calls: Gemini's own `id`, else `call_<n>` in order,
    matched to the function responses that follow by name."""

    def __init__(self) -> None:
        self.issued = 0
        self.pending: dict[str, list[str]] = {}

    def call(self, part: JSON) -> str:
        """The id for a functionCall part (remembered for its response)."""
        call_id = part.get("id") or f"call_{self.issued}"
        self.issued += 1
        self.pending.setdefault(part.get("name", ""), []).append(call_id)
        return str(call_id)

    def response(self, part: JSON) -> str:
        """The id of the call a functionResponse part answers."""
        if part.get("id"):
            return str(part["id"])
        waiting = self.pending.get(part.get("name", "")) or [f"call_{self.issued}"]
        return waiting.pop(0)


def function_call_to_chat(fc: JSON, ids: CallIds) -> JSON:
    """A Gemini `functionCall` as an OpenAI chat tool call, with its id from `ids`."""
    return tool_call(ids.call(fc), fc.get("name", ""), dumps(fc.get("args") or {}))


def gemini_turn_to_chat(content: JSON, where: str, ids: CallIds) -> list[JSON]:
    """One Gemini turn as chat messages."""
    role = content.get("role") or "user"
    parts = content.get("parts") or []
    if role == "model":
        text: list[str] = []
        calls: list[JSON] = []
        for j, part in enumerate(parts):
            if "functionCall" in part:
                fc = part["functionCall"]
                calls.append(function_call_to_chat(fc, ids))
            elif "text" in part:
                if not part.get("thought"):
                    text.append(part["text"])
            else:
                raise refuse(f"{where}.parts[{j}]", "only text and function calls translate here")
        message: JSON = {"role": "assistant", "content": "".join(text) if text else None}
        if calls:
            message["tool_calls"] = calls
        return [message]
    out: list[JSON] = []
    chat_parts: list[JSON] = []
    for j, part in enumerate(parts):
        if "functionResponse" in part:
            fr = part["functionResponse"]
            response = fr.get("response")
            result = response.get("result", response) if isinstance(response, dict) else response
            text_result = result if isinstance(result, str) else dumps(result)
            out.append({"role": "tool", "tool_call_id": ids.response(fr), "content": text_result})
        elif "text" in part:
            chat_parts.append({"type": "text", "text": part["text"]})
        elif "inlineData" in part:
            data = part["inlineData"]
            url = f"data:{data.get('mimeType', '')};base64,{data.get('data', '')}"
            chat_parts.append({"type": "image_url", "image_url": {"url": url}})
        elif "fileData" in part:
            chat_parts.append(
                {"type": "image_url", "image_url": {"url": part["fileData"].get("fileUri", "")}}
            )
        else:
            raise refuse(f"{where}.parts[{j}]", "this part has no OpenAI chat form")
    if chat_parts:
        only_text = all(p["type"] == "text" for p in chat_parts)
        content_value: Any = "".join(p["text"] for p in chat_parts) if only_text else chat_parts
        out.append({"role": "user", "content": content_value})
    return out


def chat_tool_choice(config: JSON) -> Any:
    """A Gemini `functionCallingConfig` as OpenAI `tool_choice`."""
    mode = config.get("mode", "AUTO")
    allowed = config.get("allowedFunctionNames") or []
    if mode in ("ANY", "VALIDATED") and len(allowed) == 1:
        return {"type": "function", "function": {"name": allowed[0]}}
    if mode == "ANY":
        return "required"
    if mode == "NONE":
        return "none"
    return "auto"


# ---------------------------------------------------------------- usage and replies


def gemini_usage_to_chat(meta: JSON) -> JSON:
    """A Gemini `usageMetadata` as an OpenAI chat `usage` object."""
    prompt = count(meta.get("promptTokenCount")) + count(meta.get("toolUsePromptTokenCount"))
    thoughts = count(meta.get("thoughtsTokenCount"))
    completion = count(meta.get("candidatesTokenCount")) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": min(count(meta.get("cachedContentTokenCount")), prompt)
        },
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def chat_usage_to_gemini(usage: JSON) -> JSON:
    """An OpenAI chat `usage` object as a Gemini `usageMetadata`."""
    prompt = count(usage.get("prompt_tokens"))
    completion = count(usage.get("completion_tokens"))
    thoughts = min(
        count((usage.get("completion_tokens_details") or {}).get("reasoning_tokens")), completion
    )
    out: JSON = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion - thoughts,
        "totalTokenCount": prompt + completion,
    }
    cached = count((usage.get("prompt_tokens_details") or {}).get("cached_tokens"))
    if cached:
        out["cachedContentTokenCount"] = min(cached, prompt)
    if thoughts:
        out["thoughtsTokenCount"] = thoughts
    return out


def gemini_message(parts: list[JSON], ids: CallIds) -> tuple[JSON, bool]:
    """Gemini reply parts as a chat message delta/message; and whether it called tools."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[JSON] = []
    for part in parts:
        if "functionCall" in part:
            fc = part["functionCall"]
            calls.append({"index": len(calls), **function_call_to_chat(fc, ids)})
        elif "text" in part:
            (thoughts if part.get("thought") else text).append(part["text"])
    message: JSON = {}
    if text:
        message["content"] = "".join(text)
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return message, bool(calls)


def gemini_reply_to_chat(reply: JSON, client_model: str = "") -> JSON:
    """A Gemini generateContent reply as an OpenAI chat completion."""
    candidates = reply.get("candidates") or [{}]
    candidate = candidates[0]
    message, called = gemini_message((candidate.get("content") or {}).get("parts") or [], CallIds())
    calls = message.pop("tool_calls", None)
    if calls:
        message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    reason = candidate.get("finishReason") or "STOP"
    finish = "tool_calls" if called and reason == "STOP" else FINISH_FROM_GEMINI.get(reason, "stop")
    return chat_completion(
        reply.get("responseId", ""),
        reply.get("modelVersion") or client_model,
        {"role": "assistant", "content": message.get("content"), **message},
        finish,
        gemini_usage_to_chat(reply.get("usageMetadata") or {}),
    )


def chat_reply_to_gemini(reply: JSON, client_model: str = "") -> JSON:
    """An OpenAI chat completion as a Gemini generateContent reply."""
    choice = (reply.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    parts: list[JSON] = []
    if message.get("reasoning_content"):
        parts.append({"text": message["reasoning_content"], "thought": True})
    if message.get("content"):
        parts.append({"text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(
            {
                "functionCall": {
                    "id": call.get("id", ""),
                    "name": function.get("name", ""),
                    "args": parse_arguments(function.get("arguments") or ""),
                }
            }
        )
    finish = choice.get("finish_reason") or "stop"
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": parts},
                "finishReason": FINISH_TO_GEMINI.get(finish, "STOP"),
                "index": 0,
            }
        ],
        "usageMetadata": chat_usage_to_gemini(reply.get("usage") or {}),
        "modelVersion": reply.get("model") or client_model,
        "responseId": reply.get("id", ""),
    }


# ---------------------------------------------------------------- streams


class ChatChunksFromGemini:
    """Gemini stream chunks -> OpenAI chat chunk objects (and "[DONE]" at the finish).

    Gemini sends a function call whole, in one chunk: it becomes one `tool_calls` delta
    with the complete arguments. Every chunk carries running usage; the usage chunk after
    the finish holds the last.
    """

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""
        self.created = int(time.time())
        self.ids = CallIds()
        self.tools = 0
        self.usage: JSON = {}
        self.called = False
        self.started = False

    def chunk(self, delta: JSON, finish: str | None = None) -> JSON:
        """One chat chunk for choice 0."""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def chunks(self, data: JSON) -> list[JSON | str]:
        """The chat chunks for one Gemini chunk."""
        self.id = data.get("responseId") or self.id
        self.model = data.get("modelVersion") or self.model
        if isinstance(data.get("usageMetadata"), dict):
            self.usage = data["usageMetadata"]
        out: list[JSON | str] = []
        if not self.started:
            self.started = True
            out.append(self.chunk({"role": "assistant", "content": ""}))
        candidates = data.get("candidates") or []
        candidate = candidates[0] if candidates else {}
        delta, called = gemini_message(
            (candidate.get("content") or {}).get("parts") or [], self.ids
        )
        self.called = self.called or called
        for call in delta.get("tool_calls") or []:
            call["index"] = self.tools
            self.tools += 1
        if delta:
            out.append(self.chunk(delta))
        reason = candidate.get("finishReason")
        blocked = (data.get("promptFeedback") or {}).get("blockReason")
        if reason or blocked:
            finish = (
                "tool_calls"
                if self.called and reason == "STOP"
                else FINISH_FROM_GEMINI.get(reason or "SAFETY", "stop")
            )
            out.append(self.chunk({}, finish))
            if self.include_usage:
                usage = gemini_usage_to_chat(self.usage)
                out.append({**self.chunk({}), "choices": [], "usage": usage})
            out.append("[DONE]")
        return out


class GeminiFromChat(StreamConverter):
    """OpenAI chat chunk objects -> Gemini stream chunks (SSE, or one JSON array).

    Text and thinking pieces go out as they come; tool-call arguments are gathered and the
    call sent whole (Gemini's grammar) with the finishing chunk, which also carries the usage.
    """

    def __init__(self, model: str, array: bool) -> None:
        self.model = model
        self.array = array
        self.elements = 0
        self.id = ""
        self.calls: dict[int, JSON] = {}
        self.finish: str | None = None
        self.usage: JSON = {}

    def frame(self, payload: JSON) -> bytes:
        """One Gemini chunk in the client's framing."""
        data = msgspec.json.encode(payload)
        if not self.array:
            return b"data: " + data + b"\n\n"
        self.elements += 1
        return (b"[" if self.elements == 1 else b",") + data

    def reply(
        self, parts: list[JSON], finish: str | None = None, usage: JSON | None = None
    ) -> JSON:
        """A Gemini chunk with these parts."""
        candidate: JSON = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        out: JSON = {"candidates": [candidate], "modelVersion": self.model, "responseId": self.id}
        if usage is not None:
            out["usageMetadata"] = usage
        return out

    def event(self, data: JSON) -> list[bytes]:
        """The Gemini chunks for one chat chunk."""
        if "error" in data and "choices" not in data:
            body = msgspec.json.encode({"error": data["error"]})
            return [self.error_event(body) or b"data: " + body + b"\n\n"]
        self.id = data.get("id") or self.id
        self.model = data.get("model") or self.model
        if isinstance(data.get("usage"), dict):
            self.usage = data["usage"]
        parts: list[JSON] = []
        for choice in data.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                parts.append({"text": delta["reasoning_content"], "thought": True})
            if delta.get("content"):
                parts.append({"text": delta["content"]})
            for call in delta.get("tool_calls") or []:
                slot = self.calls.setdefault(
                    call.get("index", 0), {"id": "", "name": "", "arguments": ""}
                )
                function = call.get("function") or {}
                slot["id"] = call.get("id") or slot["id"]
                slot["name"] = function.get("name") or slot["name"]
                slot["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return [self.frame(self.reply(parts))] if parts else []

    def done(self) -> list[bytes]:
        """The finishing chunk (whole function calls, finish reason, usage), at `[DONE]`."""
        parts = [
            {
                "functionCall": {
                    "id": c["id"],
                    "name": c["name"],
                    "args": parse_arguments(c["arguments"]),
                }
            }
            for _, c in sorted(self.calls.items())
        ]
        finish = FINISH_TO_GEMINI.get(self.finish or "stop", "STOP")
        out = [self.frame(self.reply(parts, finish, chat_usage_to_gemini(self.usage)))]
        if self.array:
            out.append(b"]")
        return out

    def error_event(self, body: bytes) -> bytes | None:
        """In the JSON-array form the error is the array's last element, and closes it."""
        if not self.array:
            return None
        self.elements += 1
        return (b"[" if self.elements == 1 else b",") + body + b"]"
