"""What a model name may be, and how configured model patterns match it.

Model names reach upstream URLs (Gemini's `models/{model}:{action}`), routing, pricing and
per-key allow-lists, so one module decides what a valid name is and what a `*` pattern
matches; ingress, adapters and the routing, pricing and access plugins all ask it.
"""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from functools import lru_cache

from tokone.core.errors import GatewayError

MAX_MODEL_CHARS = 256
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+~-]*", re.ASCII)


def model_name_problem(name: str, *, slashes: bool = False) -> str | None:
    """Why `name` cannot be a model name (None when it can).

    A model name may end up in an upstream URL path (Gemini's `models/{model}:{action}`),
    so it is one path segment of letters, digits and ``. _ - : @ + ~``, starting with a
    letter or digit, without ``..``, at most `MAX_MODEL_CHARS` long: never ``\\``, ``?``,
    ``#``, ``%``, whitespace, control or non-ASCII characters. With `slashes` (the OpenAI and
    Anthropic families, whose model travels in the body), ``/`` may separate such segments,
    as in ``meta-llama/Llama-3.1-8B-Instruct``; the Gemini adapter still refuses any ``/``
    in a path it builds.
    """
    if not name:
        return "must not be empty"
    if len(name) > MAX_MODEL_CHARS:
        return f"is longer than {MAX_MODEL_CHARS} characters"
    segments = name.split("/") if slashes else (name,)
    if ".." in name or not all(_MODEL_NAME.fullmatch(s) for s in segments):
        allowed = "letters, digits and '.', '_', '-', ':', '@', '+', '~'"
        if slashes:
            allowed += " in '/'-separated parts"
        return f"may only contain {allowed} (each starting with a letter or digit, no '..')"
    return None


def check_model(name: str, *, slashes: bool = False) -> str:
    """`name` if it is a valid model name (see :func:`model_name_problem`); else a 400 on
    param `model`."""
    problem = model_name_problem(name, slashes=slashes)
    if problem is not None:
        shown = name[:80].encode("unicode_escape").decode("ascii")
        raise GatewayError(
            "invalid_request", f"Invalid model name '{shown}': it {problem}.", param="model"
        )
    return name


@lru_cache(maxsize=4096)
def _segments(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("/"))


def model_matches(name: str, pattern: str) -> bool:
    """Whether model `name` matches a configured `pattern` (exactly, or by wildcard).

    Patterns are `fnmatch` patterns (`*`, `?`, `[...]`) whose wildcards match within one
    `/`-separated segment only: `gemini-*` matches `gemini-2.5-flash` but never
    `gemini-x/../other`.
    """
    if name == pattern:
        return True
    if "*" not in pattern and "?" not in pattern and "[" not in pattern:
        return False
    if "/" not in name and "/" not in pattern:
        return fnmatchcase(name, pattern)
    parts, wanted = name.split("/"), _segments(pattern)
    return len(parts) == len(wanted) and all(map(fnmatchcase, parts, wanted))


def model_allowed(model: str, allowed: tuple[str, ...]) -> bool:
    """Whether `model` matches the allow-list (empty = everything; `*` wildcards allowed,
    never matching across a `/`)."""
    return not allowed or any(model_matches(model, pattern) for pattern in allowed)
