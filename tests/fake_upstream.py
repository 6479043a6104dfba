"""A fast, zero-delay fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats.

Used two ways:

* as a library from pytest fixtures::

      up = FakeUpstream(host="127.0.0.1", port=0).start()   # background thread + own loop
      client = openai.OpenAI(base_url=up.base_url + "/v1", api_key="k", max_retries=0)
      ...
      up.stop()

* as a script for benchmarks::

      python tests/fake_upstream.py --port 9001 [--no-record] [--chunks 16]

  prints ``listening on PORT`` (flushed) once ready and serves until killed.

Deterministic behaviour
=======================

Reply text
    The reply to every generation request is ``N`` pieces, ``N = chunks`` (16 by default)::

        "Hello" + " from" + " <model>!" + " tok" * (N - 3)

    i.e. the text always starts with ``"Hello from <model>!"`` and has exactly ``N``
    whitespace-separated words (for ``N < 3`` the last piece holds the remaining words).
    A stream carries exactly one piece per content chunk; the concatenated pieces equal
    the non-stream text.  ``reply_pieces(model, n)`` / ``reply_text(model, n)`` compute it.
    A request without a model uses the model name ``"unknown-model"``.

Usage numbers
    * output tokens = ``N`` (the number of chunks), always.
    * input tokens ``I`` = number of whitespace-separated words in all text of the input,
      minimum 1 (see ``count_input_tokens``).  Text is collected recursively from the JSON
      body, descending only into these keys: ``messages, content, text, parts, contents,
      input, prompt, system, systemInstruction, system_instruction, instructions, output,
      requests, generateContentRequest``.  So roles, model names, tool schemas, image
      parts etc. are not counted; system prompts / instructions are.  An integer inside
      such a key (an OpenAI token-id array) counts as one token.
    * cached tokens ``C`` = ``I // 2`` if the model name contains ``"cached"``
      (case-insensitive), else 0.
    * OpenAI chat/completions: ``prompt_tokens = I`` (includes cached, like the real API),
      ``prompt_tokens_details.cached_tokens = C``, ``completion_tokens = N``,
      ``completion_tokens_details.reasoning_tokens = 0``, ``total_tokens = I + N``.
    * OpenAI embeddings: ``prompt_tokens = total_tokens = I``.
    * OpenAI responses: ``input_tokens = I``, ``input_tokens_details.cached_tokens = C``,
      ``output_tokens = N``, ``output_tokens_details.reasoning_tokens = 0``,
      ``total_tokens = I + N``.  ``/v1/responses/input_tokens`` answers ``I``.
    * Anthropic: like the real API, ``input_tokens`` excludes cache reads:
      ``input_tokens = I - C``, ``cache_read_input_tokens = C``,
      ``cache_creation_input_tokens = 0``, ``output_tokens = N`` (so the three input fields
      add up to ``I``).  Streams: ``message_start`` carries those input fields and
      ``output_tokens = 1``; ``message_delta`` carries the cumulative final usage (all
      input fields again plus ``output_tokens = N``).  ``count_tokens`` answers ``I``.
    * Gemini: ``promptTokenCount = I`` (includes cached), ``cachedContentTokenCount = C``
      (only present when C > 0), ``candidatesTokenCount = N``, ``thoughtsTokenCount = 3``
      only if the model name contains ``"thinking"``, ``totalTokenCount = I + N + thoughts``.
      Streams carry running usage on every chunk: chunk ``i`` (1-based) has
      ``candidatesTokenCount = i``, so the last chunk has the final numbers.
      ``countTokens`` answers ``{"totalTokens": I}``.  Embedding calls carry no usage.

Other echoes
    * OpenAI chat and responses echo ``service_tier`` (request value, else ``"default"``;
      ``"auto"`` is answered as ``"default"``, the tier the real API reports serving it in);
      legacy completions do not carry it (the real type has no such field).
    * Embeddings: one embedding per input item (a string, a token array, or list
      thereof); 8 floats by default (``dimensions`` / ``outputDimensionality`` honoured),
      item ``i`` has values ``i + (j + 1) / 16`` for ``j`` in ``range(dims)`` (exact in
      float32).  ``encoding_format == "base64"`` returns base64 of the little-endian
      float32 array, as the real API does (the openai SDK asks for it by default).
    * Only one choice / candidate is ever returned (``n`` is ignored).

Routes
    OpenAI: ``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
    ``/v1/responses`` (SSE with ``event:`` lines when ``stream``), ``/v1/responses/input_tokens``,
    WebSocket ``GET /v1/responses`` (JSON ``response.create`` frames in, the same event
    sequence as the SSE stream out, many turns per connection; a ``stream_id`` sent by the
    client is echoed on every event), ``GET /v1/models``, ``GET /v1/models/{id}``.
    Anthropic: ``POST /v1/messages``, ``POST /v1/messages/count_tokens`` (``?beta=true``
    accepted), ``GET /v1/models[/{id}]`` when the request carries ``anthropic-version``.
    Gemini: ``POST /v1beta/models/{model}:{action}`` and ``/v1/models/{model}:{action}`` for
    ``generateContent``, ``streamGenerateContent`` (``?alt=sse`` -> SSE, otherwise a JSON
    array), ``countTokens``, ``embedContent``, ``batchEmbedContents``; ``GET /v1beta/models``
    and ``GET /v1beta/models/{model}`` (``/v1/models`` too when the request carries
    ``x-goog-api-key`` or ``?key=``).
    Control: ``POST /_control`` (JSON ``{"action": "<method name>", ...kwargs}``, e.g.
    ``{"action": "fail_with", "status": 429, "count": 2, "retry_after": 1}``),
    ``GET /_requests`` (recorded requests as JSON), ``POST /_reset``.  Control routes are
    neither recorded nor subject to failure injection.

Auth
    Every request's headers are recorded (``Authorization`` / ``x-api-key`` /
    ``x-goog-api-key`` included).  With ``require_key="..."`` a request is accepted when
    any of ``Authorization: Bearer KEY``, ``x-api-key``, ``x-goog-api-key`` or ``?key=``
    equals it; otherwise 401 in the family's error shape.  (Note: anthropic-sdk-python 2.x
    sends its key as ``Authorization: Bearer``, older releases as ``x-api-key``; google-genai
    sends ``x-goog-api-key`` and, from 3.x, defaults to the ``/v1`` API version.)

Failure injection
    Every method queues its effect for the next ``count`` matching requests (calls queue
    up: ``fail_with(429); fail_with(500)`` fails the next request with 429, the one after
    with 500).  Order per request: record, hang, fail, auth, answer.

    * ``fail_with(status, count=1, retry_after=None)``: any API request (a WebSocket
      handshake too) gets ``status`` in the family's error shape (+ ``retry-after``).
    * ``hang(seconds, count=1)``: any API request sleeps before sending headers.
    * ``cut_stream_after(k, count=1)``: the next streaming response (SSE, Gemini JSON
      array, or WebSocket turn) sends its preamble events and ``k`` content chunks
      (``k`` clamped to N) then closes the TCP connection with no terminating event,
      no ``[DONE]`` and no final zero-length chunk (WebSocket: no close frame).
    * ``stall_stream_after(k, seconds, count=1)``: like the above, but sleeps ``seconds``
      after ``k`` content chunks and then finishes the stream normally.
    * ``delay_chunks(seconds)``: global sleep before every content chunk (default 0).
    * ``delay_first_chunk(seconds)``: global sleep before the first content chunk instead
      (default 0); ``pace(first, gap)`` sets both. With ``chunks=N`` a paced stream lasts
      about ``first + (N - 1) * gap`` seconds. Every streaming endpoint of every family
      (SSE, Gemini's JSON array, WebSocket turns) honours them.
    * ``fail_ws_turn(status, count=1)``: the next WebSocket ``response.create`` turn is
      answered with an ``{"type": "error", "status": ...}`` event instead of a response.
    * ``misreport_usage(mode, count=1)``: the next ``count`` generation or embedding
      requests (stream or not, every family; not Gemini embeddings) report usage
      wrongly. ``"omit"``: no usage object at all (Gemini: no ``usageMetadata``;
      Anthropic streams: none in ``message_start`` or ``message_delta``); ``"negative"``:
      every count negated; ``"garbage"``: the counts are a bool, a float, a string and
      10**15 in turn; ``"late"``: Gemini-style, every chunk but the last carries only
      ``promptTokenCount`` (other families: as usual).
    * ``clear_failures()`` drops everything queued; ``reset()`` also clears recordings.

    Non-streaming requests never consume ``cut``/``stall`` entries.  A refused
    connection is simply a port with no server.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import itertools
import json
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

try:  # msgspec is a project dependency; fall back to stdlib json if it is missing.
    import msgspec

    _ENCODER = msgspec.json.Encoder()
    _dumps: Callable[[Any], bytes] = _ENCODER.encode
    _loads: Callable[[bytes], Any] = msgspec.json.decode
    _DecodeError: tuple[type[Exception], ...] = (msgspec.DecodeError, ValueError)
except ImportError:  # pragma: no cover

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads
    _DecodeError = (ValueError,)

__all__ = [
    "DEFAULT_ANTHROPIC_MODELS",
    "DEFAULT_GEMINI_MODELS",
    "DEFAULT_MODELS",
    "FakeUpstream",
    "RecordedRequest",
    "count_input_tokens",
    "main",
    "reply_pieces",
    "reply_text",
]

DEFAULT_MODELS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
DEFAULT_ANTHROPIC_MODELS: tuple[str, ...] = ("claude-sonnet-4-6", "claude-haiku-4-5")
DEFAULT_GEMINI_MODELS: tuple[str, ...] = (
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-embedding-001",
)

OPENAI, ANTHROPIC, GEMINI = "openai", "anthropic", "gemini"
_FINGERPRINT = "fp_fake0001"
_UNKNOWN_MODEL = "unknown-model"
_DEFAULT_DIMS = 8
_THOUGHTS_TOKENS = 3

# Event kinds inside a stream: preamble (never gated), content chunk, trailer.
_PRE, _CONTENT, _POST = 0, 1, 2
_Event = tuple[int, str | None, Any]  # (kind, SSE event name or None, dict payload or raw bytes)

_TEXT_KEYS = frozenset(
    {
        "messages",
        "content",
        "text",
        "parts",
        "contents",
        "input",
        "prompt",
        "system",
        "systemInstruction",
        "system_instruction",
        "instructions",
        "output",
        "requests",
        "generateContentRequest",
    }
)


# --------------------------------------------------------------------------- helpers


def _count_words(node: Any) -> int:
    if isinstance(node, str):
        return len(node.split())
    if isinstance(node, bool):
        return 0
    if isinstance(node, int):
        return 1
    if isinstance(node, list):
        return sum(_count_words(x) for x in node)
    if isinstance(node, dict):
        return sum(_count_words(v) for k, v in node.items() if k in _TEXT_KEYS)
    return 0


def count_input_tokens(body: Any) -> int:
    """Return the deterministic input-token count for a request body (see module doc)."""
    return max(1, _count_words(body))


@functools.lru_cache(maxsize=4096)
def reply_pieces(model: str, n: int = 16) -> tuple[str, ...]:
    """Return the ``n`` stream pieces of the reply for ``model`` (``n`` >= 1)."""
    if n < 1:
        raise ValueError("chunks must be >= 1")
    base = ["Hello", "from", f"{model}!"]
    words = base + ["tok"] * (n - 3) if n >= 3 else [*base[: n - 1], " ".join(base[n - 1 :])]
    return (words[0], *(" " + w for w in words[1:]))


def reply_text(model: str, n: int = 16) -> str:
    """Return the full (non-stream) reply text for ``model`` with ``n`` chunks."""
    return "".join(reply_pieces(model, n))


@functools.lru_cache(maxsize=1024)
def _vector(index: int, dims: int) -> tuple[float, ...]:
    return tuple(index + (j + 1) / 16 for j in range(dims))


@functools.lru_cache(maxsize=1024)
def _vector_b64(index: int, dims: int) -> str:
    return base64.b64encode(struct.pack(f"<{dims}f", *_vector(index, dims))).decode()


_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{next(_ids):024x}"


@dataclass(slots=True)
class _Usage:
    input: int
    output: int
    cached: int
    thoughts: int


def _usage(model: str, body: Any, chunks: int) -> _Usage:
    inp = count_input_tokens(body)
    low = model.lower()
    return _Usage(
        input=inp,
        output=chunks,
        cached=inp // 2 if "cached" in low else 0,
        thoughts=_THOUGHTS_TOKENS if "thinking" in low else 0,
    )


_USAGE_MODES = frozenset({"omit", "negative", "garbage", "late"})
_GARBAGE = (True, 1.5, "12", 10**15)


def _misreport(usage: Any, mode: str | None) -> Any:
    """``usage`` (a usage dict) as ``misreport_usage(mode)`` reports it; None means omit it."""
    if mode is None or mode == "late" or not isinstance(usage, dict):
        return usage
    if mode == "omit":
        return None
    counter = itertools.count()

    def bad(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: bad(v) for k, v in value.items()}
        if isinstance(value, int) and not isinstance(value, bool):
            if mode == "negative":
                return -abs(value) - 1
            return _GARBAGE[next(counter) % len(_GARBAGE)]
        return value

    return bad(usage)


def _set_usage(obj: dict[str, Any], key: str, usage: Any, mode: str | None) -> dict[str, Any]:
    """Put the (mis)reported ``usage`` under ``key`` of ``obj``; leave the key out for omit."""
    reported = _misreport(usage, mode)
    if reported is None and mode == "omit":
        obj.pop(key, None)
    else:
        obj[key] = reported
    return obj


def _served_tier(body: dict[str, Any]) -> str:
    """The service tier an OpenAI reply reports: the requested one, `auto` -> `default`."""
    tier = body.get("service_tier")
    return "default" if tier in (None, "", "auto") else str(tier)


@dataclass(slots=True)
class RecordedRequest:
    """One request as seen by the fake upstream.

    ``method`` is the HTTP method (``"WS"`` for a WebSocket ``response.create`` frame),
    ``path`` the URL path, ``query`` the raw query string, ``headers`` a dict with
    lower-case names (for WS frames: the handshake headers) and ``json`` the parsed JSON
    body, or None when there was none or it was not JSON.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    json: Any

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of the record."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "json": self.json,
        }

    def __getitem__(self, key: str) -> Any:
        """Allow ``rec["json"]`` as well as ``rec.json``."""
        return getattr(self, key)


@dataclass(slots=True)
class _StreamPlan:
    cut: int | None
    stall: tuple[int, float] | None
    delay: float
    first: float = 0.0


# --------------------------------------------------------------------------- error shapes

_OPENAI_ERR = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", None),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
}
_ANTHROPIC_ERR = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _error_body(family: str, status: int, message: str) -> dict[str, Any]:
    if family == ANTHROPIC:
        etype = _ANTHROPIC_ERR.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {
            "type": "error",
            "error": {"type": etype, "message": message},
            "request_id": _new_id("req_"),
        }
    if family == GEMINI:
        gstatus = _GEMINI_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {"error": {"code": status, "message": message, "status": gstatus}}
    etype, code = _OPENAI_ERR.get(
        status, ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return {"error": {"message": message, "type": etype, "param": None, "code": code}}


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=_dumps(obj), status=status, content_type="application/json", headers=headers
    )


def _error(family: str, status: int, message: str, retry_after: str | None = None) -> web.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else None
    return _json(_error_body(family, status, message), status=status, headers=headers)


def _sse_frame(name: str | None, payload: Any) -> bytes:
    data = payload if isinstance(payload, bytes) else _dumps(payload)
    if name is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _raw_frame(name: str | None, payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else _dumps(payload)


_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


# --------------------------------------------------------------------------- the server


class FakeUpstream:
    """Fake OpenAI / Anthropic / Gemini upstream on aiohttp (see the module docstring).

    ``start()`` runs it on a background thread with its own event loop, so plain sync
    tests can use it; all public methods are thread-safe.  It is also a context manager.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        chunks: int = 16,
        models: Iterable[str] = DEFAULT_MODELS,
        anthropic_models: Iterable[str] = DEFAULT_ANTHROPIC_MODELS,
        gemini_models: Iterable[str] = DEFAULT_GEMINI_MODELS,
        require_key: str | None = None,
        record: bool = True,
    ) -> None:
        """Configure the server; nothing listens until ``start()``."""
        if chunks < 1:
            raise ValueError("chunks must be >= 1")
        self.host = host
        self._requested_port = port
        self.port: int = port
        self.chunks = chunks
        self.models: list[str] = list(models)
        self.anthropic_models: list[str] = list(anthropic_models)
        self.gemini_models: list[str] = list(gemini_models)
        self.require_key = require_key
        self.record = record
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._fail: deque[tuple[int, str | None]] = deque()
        self._hang: deque[float] = deque()
        self._cut: deque[int] = deque()
        self._stall: deque[tuple[int, float]] = deque()
        self._ws_fail: deque[int] = deque()
        self._usage_modes: deque[str] = deque()
        self._chunk_delay = 0.0
        self._first_delay = 0.0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._websockets: set[web.WebSocketResponse] = set()
        self._created = int(time.time())

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """Return ``http://HOST:PORT`` (no trailing slash, no API version)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> FakeUpstream:
        """Start serving on a background thread; returns self once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop_async())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="FakeUpstream", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("FakeUpstream did not start in time")
        if errors:
            self._thread.join(5)
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop the background server (idempotent)."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._thread = None
        self._loop = None

    async def start_async(self) -> None:
        """Bind and serve on the *current* event loop (used by ``start()`` and the script)."""
        runner = web.AppRunner(
            self.build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port, backlog=1024)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]

    async def stop_async(self) -> None:
        """Stop serving on the current event loop."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def __enter__(self) -> FakeUpstream:
        """Start on enter."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop on exit."""
        self.stop()

    # ------------------------------------------------------------------ recording

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a snapshot list of the recorded requests, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and clear all failure injection (incl. chunk delay)."""
        with self._lock:
            self._requests.clear()
        self.clear_failures()

    def _record(self, request: web.Request, body: Any, method: str | None = None) -> None:
        if not self.record:
            return
        rec = RecordedRequest(
            method=method or request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
        )
        with self._lock:
            self._requests.append(rec)

    # ------------------------------------------------------------------ failure control

    def fail_with(
        self, status: int, count: int = 1, retry_after: float | str | None = None
    ) -> None:
        """Answer the next ``count`` API requests with ``status`` in the family's error shape."""
        ra = None if retry_after is None else str(retry_after)
        with self._lock:
            self._fail.extend([(int(status), ra)] * count)

    def hang(self, seconds: float, count: int = 1) -> None:
        """Sleep ``seconds`` before sending headers on the next ``count`` API requests."""
        with self._lock:
            self._hang.extend([float(seconds)] * count)

    def cut_stream_after(self, k: int, count: int = 1) -> None:
        """Abort the next ``count`` streams after ``k`` content chunks (no terminator)."""
        with self._lock:
            self._cut.extend([int(k)] * count)

    def stall_stream_after(self, k: int, seconds: float, count: int = 1) -> None:
        """Pause the next ``count`` streams for ``seconds`` after ``k`` content chunks."""
        with self._lock:
            self._stall.extend([(int(k), float(seconds))] * count)

    def delay_chunks(self, seconds: float) -> None:
        """Sleep ``seconds`` before every content chunk of every stream (0 disables)."""
        with self._lock:
            self._chunk_delay = float(seconds)

    def delay_first_chunk(self, seconds: float) -> None:
        """Sleep ``seconds`` before the first content chunk of every stream (0 disables).

        With :meth:`delay_chunks` this paces every stream: headers at once, the first chunk
        after ``seconds``, then one chunk per chunk delay (``chunks`` of them in all).
        """
        with self._lock:
            self._first_delay = float(seconds)

    def pace(self, first: float, gap: float) -> None:
        """Paced streams: first content chunk after ``first`` s, the others ``gap`` s apart."""
        with self._lock:
            self._first_delay = float(first)
            self._chunk_delay = float(gap)

    def fail_ws_turn(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` WebSocket ``response.create`` turns with an error event."""
        with self._lock:
            self._ws_fail.extend([int(status)] * count)

    def misreport_usage(self, mode: str, count: int = 1) -> None:
        """Report usage wrongly (``omit``, ``negative``, ``garbage``, ``late``) ``count`` times."""
        if mode not in _USAGE_MODES:
            raise ValueError(f"unknown usage mode {mode!r}")
        with self._lock:
            self._usage_modes.extend([mode] * count)

    def clear_failures(self) -> None:
        """Drop all queued failure injections and reset the chunk delay to 0."""
        with self._lock:
            self._usage_modes.clear()
            self._fail.clear()
            self._hang.clear()
            self._cut.clear()
            self._stall.clear()
            self._ws_fail.clear()
            self._chunk_delay = 0.0
            self._first_delay = 0.0

    def _pop(self, queue: deque[Any]) -> Any:
        if not queue:  # lock-free fast path for the common case
            return None
        with self._lock:
            return queue.popleft() if queue else None

    def _stream_plan(self) -> _StreamPlan | None:
        cut = self._pop(self._cut)
        stall = self._pop(self._stall)
        delay = self._chunk_delay
        first = self._first_delay
        if cut is None and stall is None and not delay and not first:
            return None
        n = self.chunks
        return _StreamPlan(
            cut=None if cut is None else max(0, min(cut, n)),
            stall=None if stall is None else (max(0, min(stall[0], n)), stall[1]),
            delay=delay,
            first=first,
        )

    # ------------------------------------------------------------------ app & plumbing

    def build_app(self) -> web.Application:
        """Return the aiohttp application (routes only; no server is started)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/v1/chat/completions", self._h_chat)
        r.add_post("/v1/completions", self._h_completions)
        r.add_post("/v1/embeddings", self._h_embeddings)
        r.add_post("/v1/responses", self._h_responses)
        r.add_get("/v1/responses", self._h_responses_ws)
        r.add_post("/v1/responses/input_tokens", self._h_responses_input_tokens)
        r.add_get("/v1/models", self._h_models_list)
        r.add_get("/v1/models/{name}", self._h_model_get)
        r.add_post("/v1/models/{name}", self._h_gemini_action)
        r.add_post("/v1/messages", self._h_messages)
        r.add_post("/v1/messages/count_tokens", self._h_count_tokens)
        r.add_get("/v1beta/models", self._h_gemini_models_list)
        r.add_get("/v1beta/models/{name}", self._h_gemini_model_get)
        r.add_post("/v1beta/models/{name}", self._h_gemini_action)
        r.add_post("/_control", self._h_control)
        r.add_get("/_requests", self._h_requests)
        r.add_post("/_reset", self._h_reset)
        r.add_route("*", "/{tail:.*}", self._h_not_found)
        app.on_shutdown.append(self._close_websockets)
        return app

    async def _close_websockets(self, app: web.Application) -> None:
        for ws in list(self._websockets):
            with contextlib.suppress(Exception):
                await ws.close()

    def _key_ok(self, request: web.Request) -> bool:
        want = self.require_key
        if want is None:
            return True
        h = request.headers
        auth = h.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            auth = auth[7:]
        return want in (auth, h.get("x-api-key"), h.get("x-goog-api-key"), request.query.get("key"))

    async def _prelude(
        self, request: web.Request, family: str, *, need_body: bool
    ) -> tuple[Any, web.StreamResponse | None]:
        """Read + record the body, apply hang / fail / auth. Returns (body, early_response)."""
        body: Any = None
        bad_json = False
        if request.body_exists:
            raw = await request.read()
            if raw:
                try:
                    body = _loads(raw)
                except _DecodeError:
                    bad_json = True
        self._record(request, body)
        if self._hang:
            seconds = self._pop(self._hang)
            if seconds:
                await asyncio.sleep(seconds)
        if self._fail:
            fail = self._pop(self._fail)
            if fail is not None:
                status, retry_after = fail
                return body, _error(family, status, f"Injected failure {status}", retry_after)
        if not self._key_ok(request):
            msg = "Incorrect API key provided" if family == OPENAI else "invalid x-api-key"
            if family == GEMINI:
                msg = "API key not valid. Please pass a valid API key."
            return body, _error(family, 401, msg)
        if need_body and (bad_json or not isinstance(body, dict)):
            return body, _error(family, 400, "Request body must be a JSON object")
        return body, None

    async def _emit(
        self,
        request: web.Request,
        events: Iterable[_Event],
        frame: Callable[[str | None, Any], bytes],
        headers: dict[str, str],
    ) -> web.StreamResponse:
        """Write a streamed response, honouring cut / stall / delay injections."""
        plan = self._stream_plan()
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        if plan is None:  # hot path: one write
            await resp.write(b"".join(frame(name, payload) for _, name, payload in events))
            return resp
        idx = 0
        post_gated = False
        for kind, name, payload in events:
            if kind == _CONTENT or (kind == _POST and not post_gated):
                post_gated = post_gated or kind == _POST
                if not await self._gate(idx, plan, kind == _CONTENT):
                    self._abort(request)
                    return resp
                idx += kind == _CONTENT
            await resp.write(frame(name, payload))
        return resp

    async def _gate(self, idx: int, plan: _StreamPlan, is_content: bool) -> bool:
        """Apply per-chunk injections before content chunk ``idx``; False means cut now."""
        if plan.stall is not None and plan.stall[0] == idx:
            await asyncio.sleep(plan.stall[1])
            plan.stall = None
        if plan.cut is not None and plan.cut == idx:
            return False
        if is_content and idx == 0 and plan.first:
            await asyncio.sleep(plan.first)
        elif is_content and plan.delay:
            await asyncio.sleep(plan.delay)
        return True

    @staticmethod
    def _abort(request: web.Request) -> None:
        transport = request.transport
        if transport is not None:
            transport.close()

    # ------------------------------------------------------------------ control routes

    async def _h_control(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            action = body.pop("action")
        except Exception:
            return _json({"ok": False, "error": "body must be JSON with an 'action'"}, 400)
        methods: dict[str, Callable[..., None]] = {
            "fail_with": self.fail_with,
            "hang": self.hang,
            "cut_stream_after": self.cut_stream_after,
            "stall_stream_after": self.stall_stream_after,
            "delay_chunks": self.delay_chunks,
            "delay_first_chunk": self.delay_first_chunk,
            "pace": self.pace,
            "fail_ws_turn": self.fail_ws_turn,
            "misreport_usage": self.misreport_usage,
            "clear_failures": self.clear_failures,
            "reset": self.reset,
        }
        if action == "set_record":
            self.record = bool(body.get("record", True))
            return _json({"ok": True})
        fn = methods.get(action)
        if fn is None:
            return _json({"ok": False, "error": f"unknown action {action!r}"}, 400)
        try:
            fn(**body)
        except TypeError as exc:
            return _json({"ok": False, "error": str(exc)}, 400)
        return _json({"ok": True})

    async def _h_requests(self, request: web.Request) -> web.Response:
        return _json([r.to_dict() for r in self.requests])

    async def _h_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})

    async def _h_not_found(self, request: web.Request) -> web.Response:
        family = _family_for(request)
        if request.method == "POST":
            # Still record unknown API calls: handy when debugging a gateway.
            await self._prelude(request, family, need_body=False)
        return _error(family, 404, f"Unknown route {request.method} {request.path}")

    # ------------------------------------------------------------------ OpenAI

    def _openai_usage(self, u: _Usage) -> dict[str, Any]:
        return {
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    async def _h_chat(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        model = str(body.get("model") or _UNKNOWN_MODEL)
        usage = _usage(model, body.get("messages"), self.chunks)
        pieces = reply_pieces(model, self.chunks)
        tier = _served_tier(body)
        cid = _new_id("chatcmpl-")
        created = int(time.time())
        mode = self._pop(self._usage_modes)
        if body.get("stream"):
            events = self._chat_events(body, model, tier, cid, created, usage, pieces, mode)
            return await self._emit(request, events, _sse_frame, _SSE_HEADERS)
        out = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(pieces),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": self._openai_usage(usage),
            "service_tier": tier,
            "system_fingerprint": _FINGERPRINT,
        }
        _set_usage(out, "usage", out["usage"], mode)
        return _json(out, headers={"x-request-id": _new_id("req_")})

    def _chat_events(
        self,
        body: dict[str, Any],
        model: str,
        tier: str,
        cid: str,
        created: int,
        usage: _Usage,
        pieces: tuple[str, ...],
        mode: str | None = None,
    ) -> Iterator[_Event]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            d: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": tier,
                "system_fingerprint": _FINGERPRINT,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                d["usage"] = None
            return d

        yield _PRE, None, chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in pieces:
            yield _CONTENT, None, chunk({"content": piece})
        yield _POST, None, chunk({}, "stop")
        if include_usage and mode != "omit":
            final = chunk({})
            final["choices"] = []
            _set_usage(final, "usage", self._openai_usage(usage), mode)
            yield _POST, None, final
        yield _POST, None, b"[DONE]"

    async def _h_completions(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        model = str(body.get("model") or _UNKNOWN_MODEL)
        usage = _usage(model, body.get("prompt"), self.chunks)
        pieces = reply_pieces(model, self.chunks)
        cid = _new_id("cmpl-")
        created = int(time.time())
        mode = self._pop(self._usage_modes)

        def obj(text: str, finish: str | None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": _FINGERPRINT,
                "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            }

        if not body.get("stream"):
            out = obj("".join(pieces), "stop")
            _set_usage(out, "usage", self._openai_usage(usage), mode)
            return _json(out, headers={"x-request-id": _new_id("req_")})

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def events() -> Iterator[_Event]:
            for piece in pieces:
                c = obj(piece, None)
                if include_usage:
                    c["usage"] = None
                yield _CONTENT, None, c
            last = obj("", "stop")
            if include_usage:
                last["usage"] = None
            yield _POST, None, last
            if include_usage and mode != "omit":
                u = obj("", None)
                u["choices"] = []
                _set_usage(u, "usage", self._openai_usage(usage), mode)
                yield _POST, None, u
            yield _POST, None, b"[DONE]"

        return await self._emit(request, events(), _sse_frame, _SSE_HEADERS)

    async def _h_embeddings(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        model = str(body.get("model") or _UNKNOWN_MODEL)
        inp = body.get("input")
        if (
            isinstance(inp, list)
            and inp
            and not (isinstance(inp[0], int) and not isinstance(inp[0], bool))
        ):
            items: list[Any] = inp
        else:
            items = [inp]
        dims = body.get("dimensions") or _DEFAULT_DIMS
        b64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": _vector_b64(i, dims) if b64 else list(_vector(i, dims)),
            }
            for i in range(len(items))
        ]
        n = count_input_tokens(inp)
        out = {"object": "list", "data": data, "model": model}
        usage = {"prompt_tokens": n, "total_tokens": n}
        _set_usage(out, "usage", usage, self._pop(self._usage_modes))
        return _json(out, headers={"x-request-id": _new_id("req_")})

    def _response_obj(
        self,
        body: dict[str, Any],
        model: str,
        rid: str,
        mid: str,
        created: int,
        usage: _Usage | None,
        text: str | None,
    ) -> dict[str, Any]:
        """Build a Response object; ``text is None`` means the in-progress snapshot."""
        done = text is not None
        output = (
            [
                {
                    "id": mid,
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                    ],
                }
            ]
            if done
            else []
        )
        return {
            "id": rid,
            "object": "response",
            "created_at": created,
            "status": "completed" if done else "in_progress",
            "background": False,
            "completed_at": int(time.time()) if done else None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": _served_tier(body),
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "usage": None
            if usage is None
            else {
                "input_tokens": usage.input,
                "input_tokens_details": {"cached_tokens": usage.cached, "cache_write_tokens": 0},
                "output_tokens": usage.output,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.input + usage.output,
            },
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _responses_usage(self, body: dict[str, Any], model: str) -> _Usage:
        counted = {k: body[k] for k in ("input", "instructions") if k in body}
        return _usage(model, counted, self.chunks)

    def _responses_events(self, body: dict[str, Any], mode: str | None = None) -> Iterator[_Event]:
        model = str(body.get("model") or _UNKNOWN_MODEL)
        usage = self._responses_usage(body, model)
        pieces = reply_pieces(model, self.chunks)
        text = "".join(pieces)
        rid, mid = _new_id("resp_"), _new_id("msg_")
        created = int(time.time())
        seq = itertools.count()
        snapshot = self._response_obj(body, model, rid, mid, created, None, None)

        def ev(kind: int, etype: str, **fields: Any) -> _Event:
            return kind, etype, {"type": etype, "sequence_number": next(seq), **fields}

        yield ev(_PRE, "response.created", response=snapshot)
        yield ev(_PRE, "response.in_progress", response=snapshot)
        item = {
            "id": mid,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        yield ev(_PRE, "response.output_item.added", output_index=0, item=item)
        empty_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield ev(
            _PRE,
            "response.content_part.added",
            item_id=mid,
            output_index=0,
            content_index=0,
            part=empty_part,
        )
        for piece in pieces:
            yield ev(
                _CONTENT,
                "response.output_text.delta",
                item_id=mid,
                output_index=0,
                content_index=0,
                delta=piece,
                logprobs=[],
            )
        yield ev(
            _POST,
            "response.output_text.done",
            item_id=mid,
            output_index=0,
            content_index=0,
            text=text,
            logprobs=[],
        )
        full_part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        yield ev(
            _POST,
            "response.content_part.done",
            item_id=mid,
            output_index=0,
            content_index=0,
            part=full_part,
        )
        done_item = {**item, "status": "completed", "content": [full_part]}
        yield ev(_POST, "response.output_item.done", output_index=0, item=done_item)
        final = self._response_obj(body, model, rid, mid, created, usage, text)
        _set_usage(final, "usage", final["usage"], mode)
        yield ev(_POST, "response.completed", response=final)

    async def _h_responses(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        mode = self._pop(self._usage_modes)
        if body.get("stream"):
            events = self._responses_events(body, mode)
            return await self._emit(request, events, _sse_frame, _SSE_HEADERS)
        model = str(body.get("model") or _UNKNOWN_MODEL)
        usage = self._responses_usage(body, model)
        text = reply_text(model, self.chunks)
        obj = self._response_obj(
            body, model, _new_id("resp_"), _new_id("msg_"), int(time.time()), usage, text
        )
        _set_usage(obj, "usage", obj["usage"], mode)
        return _json(obj, headers={"x-request-id": _new_id("req_")})

    async def _h_responses_input_tokens(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, OPENAI, need_body=True)
        if early is not None:
            return early
        counted = {k: body[k] for k in ("input", "instructions") if k in body}
        return _json(
            {"object": "response.input_tokens", "input_tokens": count_input_tokens(counted)}
        )

    async def _h_responses_ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=64 * 1024 * 1024, autoping=True)
        if not ws.can_prepare(request).ok:
            await self._prelude(request, OPENAI, need_body=False)
            return _error(OPENAI, 405, "GET /v1/responses requires a WebSocket upgrade")
        _, early = await self._prelude(request, OPENAI, need_body=False)
        if early is not None:
            return early
        await ws.prepare(request)
        self._websockets.add(ws)
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                    continue
                try:
                    event = _loads(msg.data)
                except _DecodeError:
                    event = None
                if not isinstance(event, dict) or event.get("type") != "response.create":
                    etype = event.get("type") if isinstance(event, dict) else None
                    await ws.send_str(
                        _dumps(_ws_error(400, f"Unsupported client event type {etype!r}")).decode()
                    )
                    continue
                self._record(request, event, method="WS")
                stream_id = event.get("stream_id")
                status = self._pop(self._ws_fail)
                if status is not None:
                    err = _ws_error(status, f"Injected failure {status}")
                    if stream_id is not None:
                        err["stream_id"] = stream_id
                    await ws.send_str(_dumps(err).decode())
                    continue
                params = {k: v for k, v in event.items() if k not in ("type", "stream_id")}
                if not await self._emit_ws(request, ws, self._responses_events(params), stream_id):
                    break
        finally:
            self._websockets.discard(ws)
        return ws

    async def _emit_ws(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        events: Iterable[_Event],
        stream_id: Any,
    ) -> bool:
        plan = self._stream_plan()
        idx = 0
        post_gated = False
        for kind, _name, payload in events:
            if stream_id is not None:
                payload["stream_id"] = stream_id
            if plan is not None and (kind == _CONTENT or (kind == _POST and not post_gated)):
                post_gated = post_gated or kind == _POST
                if not await self._gate(idx, plan, kind == _CONTENT):
                    self._abort(request)
                    return False
                idx += kind == _CONTENT
            await ws.send_str(_dumps(payload).decode())
        return True

    async def _h_models_list(self, request: web.Request) -> web.StreamResponse:
        family = _family_for(request)
        if family == GEMINI:
            return await self._h_gemini_models_list(request)
        _, early = await self._prelude(request, family, need_body=False)
        if early is not None:
            return early
        if family == ANTHROPIC:
            data = [self._anthropic_model(m) for m in self.anthropic_models]
            return _json(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                }
            )
        return _json({"object": "list", "data": [self._openai_model(m) for m in self.models]})

    async def _h_model_get(self, request: web.Request) -> web.StreamResponse:
        family = _family_for(request)
        if family == GEMINI:
            return await self._h_gemini_model_get(request)
        _, early = await self._prelude(request, family, need_body=False)
        if early is not None:
            return early
        name = request.match_info["name"]
        if family == ANTHROPIC:
            if name not in self.anthropic_models:
                return _error(ANTHROPIC, 404, f"model: {name}")
            return _json(self._anthropic_model(name))
        if name not in self.models:
            return _error(OPENAI, 404, f"The model '{name}' does not exist")
        return _json(self._openai_model(name))

    def _openai_model(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self._created,
            "owned_by": "fake-upstream",
        }

    @staticmethod
    def _anthropic_model(name: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": name,
            "display_name": name.replace("-", " ").title(),
            "created_at": "2025-01-01T00:00:00Z",
            "lifecycle": "active",
        }

    # ------------------------------------------------------------------ Anthropic

    @staticmethod
    def _anthropic_usage(u: _Usage, output: int) -> dict[str, Any]:
        return {
            "input_tokens": u.input - u.cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": u.cached,
            "output_tokens": output,
        }

    async def _h_messages(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, ANTHROPIC, need_body=True)
        if early is not None:
            return early
        model = str(body.get("model") or _UNKNOWN_MODEL)
        counted = {k: body[k] for k in ("messages", "system") if k in body}
        usage = _usage(model, counted, self.chunks)
        pieces = reply_pieces(model, self.chunks)
        mid = _new_id("msg_")
        headers = {"request-id": _new_id("req_")}
        mode = self._pop(self._usage_modes)
        if not body.get("stream"):
            out = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "".join(pieces)}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {**self._anthropic_usage(usage, usage.output), "service_tier": "standard"},
            }
            _set_usage(out, "usage", out["usage"], mode)
            return _json(out, headers=headers)

        def events() -> Iterator[_Event]:
            start_usage = {**self._anthropic_usage(usage, 1), "service_tier": "standard"}
            message = {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            }
            _set_usage(message, "usage", start_usage, mode)
            yield _PRE, "message_start", {"type": "message_start", "message": message}
            yield (
                _PRE,
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            yield _PRE, "ping", {"type": "ping"}
            for piece in pieces:
                yield (
                    _CONTENT,
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": piece},
                    },
                )
            yield _POST, "content_block_stop", {"type": "content_block_stop", "index": 0}
            delta = {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            }
            _set_usage(delta, "usage", self._anthropic_usage(usage, usage.output), mode)
            yield _POST, "message_delta", delta
            yield _POST, "message_stop", {"type": "message_stop"}

        return await self._emit(request, events(), _sse_frame, {**_SSE_HEADERS, **headers})

    async def _h_count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, ANTHROPIC, need_body=True)
        if early is not None:
            return early
        counted = {k: body[k] for k in ("messages", "system") if k in body}
        return _json({"input_tokens": count_input_tokens(counted)})

    # ------------------------------------------------------------------ Gemini

    def _gemini_model(self, name: str) -> dict[str, Any]:
        embed = "embedding" in name
        methods = (
            ["embedContent", "batchEmbedContents"]
            if embed
            else ["generateContent", "streamGenerateContent", "countTokens"]
        )
        return {
            "name": f"models/{name}",
            "baseModelId": name,
            "version": "001",
            "displayName": name.replace("-", " ").title(),
            "description": f"Fake {name}",
            "inputTokenLimit": 2048 if embed else 1048576,
            "outputTokenLimit": 1 if embed else 65536,
            "supportedGenerationMethods": methods,
        }

    async def _h_gemini_models_list(self, request: web.Request) -> web.StreamResponse:
        _, early = await self._prelude(request, GEMINI, need_body=False)
        if early is not None:
            return early
        return _json({"models": [self._gemini_model(m) for m in self.gemini_models]})

    async def _h_gemini_model_get(self, request: web.Request) -> web.StreamResponse:
        _, early = await self._prelude(request, GEMINI, need_body=False)
        if early is not None:
            return early
        name = request.match_info["name"]
        if name not in self.gemini_models:
            return _error(GEMINI, 404, f"models/{name} is not found for API version")
        return _json(self._gemini_model(name))

    @staticmethod
    def _gemini_usage(u: _Usage, candidates: int) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "promptTokenCount": u.input,
            "candidatesTokenCount": candidates,
            "totalTokenCount": u.input + candidates + u.thoughts,
        }
        if u.cached:
            meta["cachedContentTokenCount"] = u.cached
        if u.thoughts:
            meta["thoughtsTokenCount"] = u.thoughts
        meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": u.input}]
        return meta

    async def _h_gemini_action(self, request: web.Request) -> web.StreamResponse:
        body, early = await self._prelude(request, GEMINI, need_body=True)
        if early is not None:
            return early
        model, _, action = request.match_info["name"].partition(":")
        if action == "generateContent":
            return self._gemini_generate(body, model, self._pop(self._usage_modes))
        if action == "streamGenerateContent":
            return await self._gemini_stream(request, body, model, self._pop(self._usage_modes))
        if action == "countTokens":
            return _json({"totalTokens": count_input_tokens(body)})
        if action == "embedContent":
            dims = body.get("outputDimensionality") or _DEFAULT_DIMS
            return _json({"embedding": {"values": list(_vector(0, dims))}})
        if action == "batchEmbedContents":
            reqs = body.get("requests") or []
            out = []
            for i, req in enumerate(reqs):
                dims = (
                    req.get("outputDimensionality") if isinstance(req, dict) else None
                ) or _DEFAULT_DIMS
                out.append({"values": list(_vector(i, dims))})
            return _json({"embeddings": out})
        return _error(GEMINI, 404, f"Unknown action {action!r} for models/{model}")

    def _gemini_generate(
        self, body: dict[str, Any], model: str, mode: str | None = None
    ) -> web.Response:
        usage = _usage(model, body, self.chunks)
        text = reply_text(model, self.chunks)
        out = {
            "candidates": [
                {
                    "content": {"parts": [{"text": text}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": self._gemini_usage(usage, usage.output),
            "modelVersion": model,
            "responseId": _new_id("gem"),
        }
        _set_usage(out, "usageMetadata", out["usageMetadata"], mode)
        return _json(out)

    async def _gemini_stream(
        self, request: web.Request, body: dict[str, Any], model: str, mode: str | None = None
    ) -> web.StreamResponse:
        usage = _usage(model, body, self.chunks)
        pieces = reply_pieces(model, self.chunks)
        rid = _new_id("gem")
        last = len(pieces) - 1

        def chunks() -> Iterator[_Event]:
            for i, piece in enumerate(pieces):
                cand: dict[str, Any] = {
                    "content": {"parts": [{"text": piece}], "role": "model"},
                    "index": 0,
                }
                if i == last:
                    cand["finishReason"] = "STOP"
                meta = self._gemini_usage(usage, i + 1)
                if mode == "late" and i != last:
                    meta = {"promptTokenCount": usage.input, "totalTokenCount": usage.input}
                out = {"candidates": [cand], "modelVersion": model, "responseId": rid}
                yield _CONTENT, None, _set_usage(out, "usageMetadata", meta, mode)

        if request.query.get("alt") == "sse":
            return await self._emit(
                request, chunks(), _sse_frame, {"Content-Type": "text/event-stream"}
            )

        def array() -> Iterator[_Event]:  # the non-SSE form is one JSON array
            yield _PRE, None, b"["
            for i, (kind, name, payload) in enumerate(chunks()):
                yield kind, name, (b",\r\n" if i else b"") + _dumps(payload)
            yield _POST, None, b"]"

        return await self._emit(
            request, array(), _raw_frame, {"Content-Type": "application/json; charset=UTF-8"}
        )


def _ws_error(status: int, message: str) -> dict[str, Any]:
    body = _error_body(OPENAI, status, message)["error"]
    return {"type": "error", "status": status, "error": body}


def _family_for(request: web.Request) -> str:
    path = request.path
    h = request.headers
    if path.startswith("/v1beta/"):
        return GEMINI
    if "anthropic-version" in h or path.startswith("/v1/messages"):
        return ANTHROPIC
    if "x-goog-api-key" in h or "key" in request.query or ":" in path.rpartition("/")[2]:
        return GEMINI
    return OPENAI


# --------------------------------------------------------------------------- script mode


def main(argv: list[str] | None = None) -> int:
    """Run the fake upstream in the foreground until killed (benchmark mode)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI/Anthropic/Gemini upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--require-key", default=None)
    parser.add_argument("--no-record", action="store_true", help="do not keep request records")
    parser.add_argument("--no-uvloop", action="store_true", help="use the stdlib event loop")
    parser.add_argument("--first-delay", type=float, default=0.0, help="s before chunk 1")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="s between chunks")
    args = parser.parse_args(argv)

    upstream = FakeUpstream(
        args.host,
        args.port,
        chunks=args.chunks,
        require_key=args.require_key,
        record=not args.no_record,
    )
    upstream.pace(args.first_delay, args.chunk_delay)

    async def serve() -> None:
        await upstream.start_async()
        print(f"listening on {upstream.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await upstream.stop_async()

    runner_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if not args.no_uvloop:
        try:
            import uvloop

            runner_factory = uvloop.new_event_loop
        except ImportError:
            runner_factory = None
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=runner_factory) as r:
        r.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
