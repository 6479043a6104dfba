"""Request bodies between OpenAI Chat Completions and Anthropic Messages, both ways.

Pure functions of the body. Kept: system prompts, multi-turn history, text and images
(base64 and URL), tool definitions, tool calls (ids kept) and tool results, `tool_choice`
and parallel-call control, stop sequences, max tokens, temperature, top_p, the end user id,
structured output (`response_format` json_schema <-> `output_config.format`), streaming.

Dropped on purpose (they change neither the meaning of the conversation nor what is billed):
Anthropic `cache_control` marks, `thinking` and `context_management` settings, assistant
`thinking` blocks, `output_config.effort`, `top_k`, `service_tier`, `speed`, `inference_geo`,
`diagnostics`, a mid-conversation system message's `output_config` when the upstream is
OpenAI-compatible (a mid-conversation system message itself becomes a chat system message,
left out once cleared by `clear_at: "next_user_message"`); OpenAI `seed`,
`frequency_penalty`, `presence_penalty`, `store`, `metadata`, `service_tier`,
`reasoning_effort`, `prompt_cache_key`, `safety_identifier` when the upstream is Anthropic.
Anthropic server tools offered in `tools` (web search, code execution, ...) are left out for
an OpenAI-compatible upstream, which has none: the model answers without them (forcing one
with `tool_choice` is refused). Anything else that has no counterpart is refused with a 400
naming the field (`n > 1`, `logprobs`, `logit_bias`, audio, `response_format` json_object,
documents, ...).
"""

from __future__ import annotations

import json
from typing import Any

from tokone.plugins.translate.base import JSON, refuse, tool_use_call

CHAT_DROPPED = frozenset(
    {
        "model",
        "stream_options",
        "seed",
        "frequency_penalty",
        "presence_penalty",
        "store",
        "metadata",
        "service_tier",
        "reasoning_effort",
        "prompt_cache_key",
        "safety_identifier",
    }
)
"""OpenAI chat fields an Anthropic upstream has no use for, dropped (see the module doc)."""
MESSAGES_DROPPED = frozenset(
    {
        "model",
        "top_k",
        "service_tier",
        "thinking",
        "cache_control",
        "context_management",
        "diagnostics",
        "inference_geo",
        "speed",
    }
)
"""Anthropic fields an OpenAI-compatible upstream has no use for, dropped (caching hints,
thinking and context-editing settings, placement and speed preferences)."""
DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires `max_tokens`: the cap for a chat request that names none (the plugin
passes `[billing] default_max_output_tokens`, the cap the balance hold assumed)."""


# ---------------------------------------------------------------- OpenAI chat -> Anthropic


def chat_to_messages(body: JSON, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> JSON:
    """An OpenAI Chat Completions request as an Anthropic Messages request."""
    out: JSON = {"model": body.get("model", "")}
    for key in body:
        if key in CHAT_DROPPED or key in CHAT_FIELDS:
            continue
        raise refuse(key, "Anthropic's Messages API has no such parameter")
    if (body.get("n") or 1) != 1:
        raise refuse("n", "Anthropic returns one choice per request")
    for key in (
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "audio",
        "prediction",
        "web_search_options",
    ):
        if body.get(key):
            raise refuse(key, "Anthropic's Messages API has no such feature")
    if body.get("modalities") not in (None, ["text"]):
        raise refuse("modalities", "Anthropic answers in text only")
    system, messages = chat_messages_to_anthropic(body.get("messages") or [])
    if system is not None:
        out["system"] = system
    out["messages"] = messages
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    out["max_tokens"] = cap if cap is not None else default_max_tokens
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("user"):
        out["metadata"] = {"user_id": body["user"]}
    tools = body.get("tools")
    if tools:
        out["tools"] = [chat_tool_to_anthropic(tool, i) for i, tool in enumerate(tools)]
    choice = chat_tool_choice_to_anthropic(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice
    fmt = body.get("response_format")
    if fmt and fmt.get("type") != "text":
        if fmt.get("type") != "json_schema":
            raise refuse("response_format", "Anthropic has structured output (json_schema) only")
        schema = (fmt.get("json_schema") or {}).get("schema") or {"type": "object"}
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if body.get("stream"):
        out["stream"] = True
    return out


CHAT_FIELDS = frozenset(
    {
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "temperature",
        "top_p",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "stream",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "audio",
        "modalities",
        "prediction",
        "web_search_options",
    }
)
"""OpenAI chat fields translated (or checked and refused) above."""


def chat_messages_to_anthropic(messages: list[JSON]) -> tuple[str | list[JSON] | None, list[JSON]]:
    """Chat messages -> (Anthropic `system`, Anthropic `messages`).

    System and developer messages (wherever they are) become the top-level system prompt,
    a string when there is one string message, else text blocks (in order); consecutive tool results
    become one user turn of `tool_result` blocks, as Anthropic wants them.
    """
    system: list[JSON] = []
    sources: list[Any] = []
    out: list[JSON] = []
    for i, message in enumerate(messages):
        role = message.get("role")
        content = message.get("content")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(text_parts(content, where))
            sources.append(content)
        elif role == "user":
            out.append({"role": "user", "content": user_content_to_anthropic(content, where)})
        elif role == "assistant":
            out.append({"role": "assistant", "content": assistant_to_anthropic(message, where)})
        elif role == "tool":
            result: JSON = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id", ""),
                "content": content if isinstance(content, str) else text_parts(content, where),
            }
            previous = out[-1] if out else None
            if previous and previous["role"] == "user" and is_tool_results(previous["content"]):
                previous["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        else:
            raise refuse(f"{where}.role", f"role {role!r} has no Anthropic counterpart")
    if not system:
        return None, out
    if len(sources) == 1 and isinstance(sources[0], str):
        return sources[0], out
    return system, out


def is_tool_results(content: Any) -> bool:
    """Whether an Anthropic user content is a list of tool_result blocks only."""
    return isinstance(content, list) and all(b.get("type") == "tool_result" for b in content)


def text_parts(content: Any, where: str) -> list[JSON]:
    """A chat content (string or parts) that may only hold text, as Anthropic text blocks."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for j, part in enumerate(content or []):
        if part.get("type") != "text":
            raise refuse(f"{where}.content[{j}].type", "only text is allowed here")
        blocks.append({"type": "text", "text": part.get("text", "")})
    return blocks


def user_content_to_anthropic(content: Any, where: str) -> str | list[JSON]:
    """A chat user content (string or text/image parts) as Anthropic content."""
    if isinstance(content, str):
        return content
    blocks: list[JSON] = []
    for j, part in enumerate(content or []):
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append({"type": "image", "source": image_source(url)})
        else:
            raise refuse(f"{where}.content[{j}].type", f"{kind!r} parts have no Anthropic form")
    return blocks


def image_source(url: str) -> JSON:
    """An image URL (a `data:` URL or http(s)) as an Anthropic image source."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";", 1)[0]
        return {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "url", "url": url}


def assistant_to_anthropic(message: JSON, where: str) -> str | list[JSON]:
    """A chat assistant message (text and tool calls) as Anthropic assistant content."""
    content = message.get("content")
    calls = message.get("tool_calls") or []
    if not calls and isinstance(content, str):
        return content
    blocks: list[JSON] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    elif content:
        blocks.extend(b for b in text_parts(content, where) if b["text"])
    for k, tool_call in enumerate(calls):
        function = tool_call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            raise refuse(f"{where}.tool_calls[{k}].function.arguments", "not JSON") from None
        blocks.append(
            {
                "type": "tool_use",
                "id": tool_call.get("id", ""),
                "name": function.get("name", ""),
                "input": arguments,
            }
        )
    return blocks


def named_function(tool: JSON, i: int, family: str) -> tuple[JSON, JSON]:
    """`tools[i]`'s name and description (refused unless a function tool, which the `family`
    takes only), and the tool's `function` for the rest."""
    if tool.get("type") != "function":
        raise refuse(f"tools[{i}].type", f"{family} takes function tools only")
    function = tool.get("function") or {}
    out: JSON = {"name": function.get("name", "")}
    if function.get("description") is not None:
        out["description"] = function["description"]
    return out, function


def chat_tool_to_anthropic(tool: JSON, i: int) -> JSON:
    """An OpenAI function tool as an Anthropic custom tool."""
    out, function = named_function(tool, i, "Anthropic")
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return out


def chat_tool_choice_to_anthropic(choice: Any, parallel: bool | None) -> JSON | None:
    """OpenAI `tool_choice` and `parallel_tool_calls` as Anthropic `tool_choice`."""
    if choice is None and parallel is not False:
        return None
    if choice is None or choice == "auto":
        out: JSON = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name", "")}
    else:
        raise refuse("tool_choice", "Anthropic takes auto, required, none or one function")
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


# ---------------------------------------------------------------- Anthropic -> OpenAI chat


MESSAGES_FIELDS = frozenset(
    {
        "messages",
        "system",
        "max_tokens",
        "stop_sequences",
        "temperature",
        "top_p",
        "metadata",
        "tools",
        "tool_choice",
        "output_config",
        "stream",
    }
)
"""Anthropic fields translated below."""


def messages_to_chat(body: JSON) -> JSON:
    """An Anthropic Messages request as an OpenAI Chat Completions request."""
    for key in body:
        if key not in MESSAGES_FIELDS and key not in MESSAGES_DROPPED:
            raise refuse(key, "OpenAI Chat Completions has no such parameter")
    out: JSON = {"model": body.get("model", "")}
    messages: list[JSON] = []
    system = body.get("system")
    if isinstance(system, str):
        messages.append({"role": "system", "content": system})
    elif system:
        messages.append({"role": "system", "content": [chat_text(b, "system") for b in system]})
    turns = body.get("messages") or []
    for i, message in enumerate(turns):
        if message.get("role") == "system":
            later_user = any(m.get("role") == "user" for m in turns[i + 1 :])
            if message.get("clear_at") == "next_user_message" and later_user:
                continue
            content = message.get("content")
            text = (
                content
                if isinstance(content, str)
                else [
                    chat_text(b, f"messages[{i}].content[{j}]") for j, b in enumerate(content or [])
                ]
            )
            messages.append({"role": "system", "content": text})
            continue
        messages.extend(anthropic_message_to_chat(message, f"messages[{i}]"))
    out["messages"] = messages
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    user = (body.get("metadata") or {}).get("user_id")
    if user:
        out["user"] = user
    # server tools (web search, code execution, ...) are offered, not required: the
    # upstream has none, so the model answers without them
    tools = [t for t in body.get("tools") or [] if t.get("type") in (None, "custom")]
    if tools:
        out["tools"] = [anthropic_tool_to_chat(tool) for tool in tools]
    choice = body.get("tool_choice")
    if choice:
        if choice.get("type") == "tool" and choice.get("name") not in {
            t.get("name") for t in tools
        }:
            raise refuse("tool_choice.name", "it names a server tool the upstream does not have")
        out.update(anthropic_tool_choice_to_chat(choice))
    fmt = (body.get("output_config") or {}).get("format")
    if fmt:
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": fmt.get("schema") or {}, "strict": True},
        }
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def chat_text(block: JSON, where: str) -> JSON:
    """An Anthropic text block as a chat text part (its `cache_control` dropped)."""
    if block.get("type") != "text":
        raise refuse(f"{where}.type", "only text is allowed here")
    return {"type": "text", "text": block.get("text", "")}


def anthropic_message_to_chat(message: JSON, where: str) -> list[JSON]:
    """One Anthropic turn as chat messages (tool results become `tool` messages first)."""
    role = message.get("role")
    content = message.get("content")
    if role not in ("user", "assistant"):
        raise refuse(f"{where}.role", f"role {role!r} has no OpenAI counterpart")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if role == "assistant":
        return [anthropic_assistant_to_chat(content or [], where)]
    out: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(content or []):
        kind = block.get("type")
        at = f"{where}.content[{j}]"
        if kind == "tool_result":
            out.append(tool_result_to_chat(block, at))
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": image_url(block, at)}})
        else:
            raise refuse(f"{at}.type", f"{kind!r} blocks have no OpenAI chat form")
    if parts or not out:
        out.append({"role": "user", "content": parts})
    return out


def tool_result_to_chat(block: JSON, where: str) -> JSON:
    """An Anthropic tool_result block as a chat `tool` message (an error result says so)."""
    content = block.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        content = [chat_text(b, f"{where}.content[{k}]") for k, b in enumerate(content)]
    if block.get("is_error"):
        text = content if isinstance(content, str) else "".join(p["text"] for p in content)
        content = f"Error: {text}"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id", ""), "content": content}


def image_url(block: JSON, where: str) -> str:
    """An Anthropic image block's source as a URL (base64 as a `data:` URL)."""
    source = block.get("source") or {}
    if source.get("type") == "base64":
        data = source.get("data", "")
        return f"data:{source.get('media_type', 'image/png')};base64,{data}"
    if source.get("type") == "url":
        return str(source.get("url", ""))
    raise refuse(f"{where}.source.type", "OpenAI takes base64 or URL images")


def anthropic_assistant_to_chat(blocks: list[JSON], where: str) -> JSON:
    """Anthropic assistant blocks as one chat assistant message (thinking dropped)."""
    texts: list[str] = []
    calls: list[JSON] = []
    for j, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            calls.append(tool_use_call(block))
        elif kind not in ("thinking", "redacted_thinking"):
            raise refuse(f"{where}.content[{j}].type", f"{kind!r} blocks have no OpenAI chat form")
    out: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    return out


def anthropic_tool_to_chat(tool: JSON) -> JSON:
    """An Anthropic custom tool as an OpenAI function tool."""
    function: JSON = {"name": tool.get("name", "")}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def anthropic_tool_choice_to_chat(choice: JSON) -> JSON:
    """Anthropic `tool_choice` as OpenAI `tool_choice` (and `parallel_tool_calls`)."""
    kind = choice.get("type")
    out: JSON = {}
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name", "")}}
    else:
        raise refuse("tool_choice.type", f"{kind!r} has no OpenAI counterpart")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out
