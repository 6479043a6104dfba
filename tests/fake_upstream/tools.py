"""Tool calls, shared by the families' chat handlers (written from the API references).

When a generation request offers tools (OpenAI chat ``tools[].function.name``, Anthropic
``tools[].name``, Gemini ``tools[].functionDeclarations[].name``) and its last turn is not a
tool result, the reply calls every offered tool once, in order (parallel calls), with the
arguments ``{"model": <model>, "call": <i>}`` and no text; ids are ``call_<i>`` (OpenAI) and
``toolu_<i>`` (Anthropic); Gemini's calls carry no id. The finish is ``tool_calls`` /
``tool_use`` / ``STOP``. Streams send each call's id and name first, then its arguments JSON
in 4-character pieces (OpenAI ``delta.tool_calls[i].function.arguments``, Anthropic
``input_json_delta``), each piece one content chunk; Gemini sends each call whole, one per
chunk. The usage is the usual one (output ``N``). Once the results come back, the reply is
the usual text.
"""

from __future__ import annotations

import json
from typing import Any


def planned_calls(offered: list[str], model: str) -> list[tuple[str, str]]:
    """(name, arguments JSON) of the calls answering a request offering the tools `offered`."""
    return [
        (name, json.dumps({"model": model, "call": i}, separators=(",", ":")))
        for i, name in enumerate(offered)
    ]


def argument_pieces(arguments: str) -> list[str]:
    """The arguments JSON as streamed: 4-character pieces."""
    return [arguments[i : i + 4] for i in range(0, len(arguments), 4)]


def openai_calls(body: dict[str, Any], model: str) -> list[tuple[str, str]]:
    """The calls for an OpenAI chat request (none once a tool result is the last message)."""
    messages = body.get("messages") or [{}]
    if not isinstance(messages[-1], dict) or messages[-1].get("role") == "tool":
        return []
    names = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or []]
    return planned_calls(names, model)


def anthropic_calls(body: dict[str, Any], model: str) -> list[tuple[str, str]]:
    """The calls for a Messages request (none once the last turn holds a tool_result)."""
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content") if isinstance(messages[-1], dict) else None
    if isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in content
    ):
        return []
    names = [
        t.get("name", "") for t in body.get("tools") or [] if t.get("type") in (None, "custom")
    ]
    return planned_calls(names, model)


def gemini_calls(body: dict[str, Any], model: str) -> list[tuple[str, str]]:
    """The calls for a generateContent request (none once a functionResponse came back)."""
    contents = body.get("contents") or [{}]
    parts = contents[-1].get("parts") or [] if isinstance(contents[-1], dict) else []
    if any(isinstance(p, dict) and "functionResponse" in p for p in parts):
        return []
    names = [
        f.get("name", "")
        for t in body.get("tools") or []
        for f in t.get("functionDeclarations") or t.get("function_declarations") or []
    ]
    return planned_calls(names, model)
