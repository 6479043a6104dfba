"""Whole replies and usage between OpenAI Chat Completions and Anthropic Messages, both ways.

Usage maps exactly: Anthropic's ``input_tokens`` leaves out cache reads and writes, OpenAI's
``prompt_tokens`` includes them, so ``prompt_tokens = input_tokens +
cache_creation_input_tokens + cache_read_input_tokens``, ``cached_tokens =
cache_read_input_tokens``, ``completion_tokens = output_tokens`` (and back, with no cache
writes: OpenAI reports none). The gateway bills what the upstream's own adapter read, so these
maps only decide what the client sees. Thinking blocks become the `reasoning_content` field
that OpenAI-compatible servers (DeepSeek, vLLM) use, and back.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tokone.plugins.translate.base import JSON, tool_use_call

STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic `stop_reason` -> OpenAI `finish_reason`."""
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""OpenAI `finish_reason` -> Anthropic `stop_reason`."""


def count(value: Any) -> int:
    """A token count from a reply (0 when absent or not an integer)."""
    return value if type(value) is int and value >= 0 else 0


def anthropic_usage_to_chat(usage: JSON) -> JSON:
    """An Anthropic `usage` object as an OpenAI chat `usage` object."""
    cached = count(usage.get("cache_read_input_tokens"))
    prompt = count(usage.get("input_tokens")) + count(usage.get("cache_creation_input_tokens"))
    prompt += cached
    completion = count(usage.get("output_tokens"))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_usage_to_anthropic(usage: JSON) -> JSON:
    """An OpenAI chat `usage` object as an Anthropic `usage` object."""
    details = usage.get("prompt_tokens_details") or {}
    prompt = count(usage.get("prompt_tokens"))
    cached = min(count(details.get("cached_tokens")), prompt)
    return {
        "input_tokens": prompt - cached,
        "output_tokens": count(usage.get("completion_tokens")),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def parse_arguments(text: str) -> Any:
    """Tool-call arguments as a JSON object (an upstream's broken JSON kept under `_raw`)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"_raw": text}
    return value if isinstance(value, dict) else {"_raw": text}


def message_to_chat(reply: JSON, client_model: str = "") -> JSON:
    """An Anthropic Messages reply as an OpenAI chat completion."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[JSON] = []
    for block in reply.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append(tool_use_call(block))
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    message["refusal"] = None
    return chat_completion(
        reply.get("id", ""),
        reply.get("model") or client_model,
        message,
        STOP_TO_FINISH.get(reply.get("stop_reason") or "end_turn", "stop"),
        anthropic_usage_to_chat(reply.get("usage") or {}),
    )


def chat_completion(reply_id: str, model: str, message: JSON, finish: str, usage: JSON) -> JSON:
    """An OpenAI chat completion with one choice."""
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }


def chat_to_message(reply: JSON, client_model: str = "") -> JSON:
    """An OpenAI chat completion (its first choice) as an Anthropic Messages reply."""
    choices = reply.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[JSON] = []
    reasoning = message.get("reasoning_content")
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": function.get("name", ""),
                "input": parse_arguments(function.get("arguments") or ""),
            }
        )
    finish = choice.get("finish_reason") or "stop"
    return {
        "id": reply.get("id", ""),
        "type": "message",
        "role": "assistant",
        "model": reply.get("model") or client_model,
        "content": content,
        "stop_reason": FINISH_TO_STOP.get(finish, "end_turn"),
        "stop_sequence": None,
        "usage": chat_usage_to_anthropic(reply.get("usage") or {}),
    }
