"""A fast, zero-delay fake LLM upstream speaking the OpenAI, Anthropic and Gemini wire formats.

Used two ways:

* as a library from pytest fixtures::

      up = FakeUpstream(host="127.0.0.1", port=0).start()   # background thread + own loop
      client = openai.OpenAI(base_url=up.base_url + "/v1", api_key="k", max_retries=0)
      ...
      up.stop()

* as a script for benchmarks::

      python tests/fake_upstream --port 9001 [--no-record] [--chunks 16]

  (or ``python -m fake_upstream`` with ``tests/`` on the path) prints ``listening on PORT``
  (flushed) once ready and serves until killed.

Layout
    ``wire``: what every family shares (JSON, token counts, reply text, usage misreporting,
    error shapes, stream frames); ``server``: settings, recordings, failure injection, the
    request prelude, the stream writer, control routes and lifecycle; ``openai_api``,
    ``anthropic_api``, ``gemini_api``: one family's handlers and reply shapes each (their
    docstrings give the routes and usage fields); ``app``: :class:`FakeUpstream`, which joins
    the families and holds the route table, and the script's ``main``.

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
    * Each family reports ``I``, ``N`` and ``C`` in its own fields: see the docstrings of
      ``openai_api``, ``anthropic_api`` and ``gemini_api``.

Control routes
    ``POST /_control`` (JSON ``{"action": "<method name>", ...kwargs}``, e.g.
    ``{"action": "fail_with", "status": 429, "count": 2, "retry_after": 1}``),
    ``GET /_requests`` (recorded requests as JSON), ``POST /_reset``.  Control routes are
    neither recorded nor subject to failure injection; any other unknown route is a 404 in
    the family's error shape.

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

from .app import FakeUpstream, main
from .wire import (
    DEFAULT_ANTHROPIC_MODELS,
    DEFAULT_GEMINI_MODELS,
    DEFAULT_MODELS,
    RecordedRequest,
    count_input_tokens,
    reply_pieces,
    reply_text,
)

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
