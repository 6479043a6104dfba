"""The shared server: settings, recorded requests, the failure-injection queues, the
request prelude (record, hang, fail, auth), the stream writer that applies cut / stall /
pace, the control routes and the lifecycle (a background thread, or the caller's loop).

The families (``openai_api``, ``anthropic_api``, ``gemini_api``) subclass
:class:`UpstreamServer` for its plumbing; :class:`~fake_upstream.app.FakeUpstream` joins them
and lists the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Self

from aiohttp import web

from .wire import (
    CONTENT,
    DECODE_ERRORS,
    DEFAULT_ANTHROPIC_MODELS,
    DEFAULT_GEMINI_MODELS,
    DEFAULT_MODELS,
    GEMINI,
    OPENAI,
    POST,
    UNKNOWN_MODEL,
    USAGE_MODES,
    Event,
    RecordedRequest,
    StreamPlan,
    Turn,
    count_usage,
    error_response,
    family_for,
    json_response,
    loads,
    reply_pieces,
)


class UpstreamServer:
    """State and plumbing every family's handlers use (see the package docstring).

    All public methods are thread-safe.
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
        self.open_streams = 0
        """Paced streams open right now (headers sent, not finished)."""
        self.peak_streams = 0
        """The most paced streams that were open at once since the start (or `reset`)."""
        self._together: tuple[int, float] | None = None
        self._all_open: asyncio.Event | None = None
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

    def start(self) -> Self:
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

    def build_app(self) -> web.Application:
        """Return the aiohttp application; :class:`FakeUpstream` holds the route table."""
        raise NotImplementedError

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

    def __enter__(self) -> Self:
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
        self.peak_streams = 0
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

    def hold_until_open(self, count: int, timeout: float) -> None:
        """Paced streams send their first chunk only once ``count`` of them are open at once
        (or ``timeout`` s after each one opened): all of them then overlap, however slowly
        the machine opens them, and `peak_streams` shows whether something capped them."""
        with self._lock:
            self._together = (int(count), float(timeout))

    def fail_ws_turn(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` WebSocket ``response.create`` turns with an error event."""
        with self._lock:
            self._ws_fail.extend([int(status)] * count)

    def misreport_usage(self, mode: str, count: int = 1) -> None:
        """Report usage wrongly (``omit``, ``negative``, ``garbage``, ``late``) ``count`` times."""
        if mode not in USAGE_MODES:
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
            self._together = None
            self._all_open = None

    def _pop(self, queue: deque[Any]) -> Any:
        if not queue:  # lock-free fast path for the common case
            return None
        with self._lock:
            return queue.popleft() if queue else None

    def _stream_plan(self) -> StreamPlan | None:
        cut = self._pop(self._cut)
        stall = self._pop(self._stall)
        delay = self._chunk_delay
        first = self._first_delay
        if cut is None and stall is None and not delay and not first:
            return None
        n = self.chunks
        return StreamPlan(
            cut=None if cut is None else max(0, min(cut, n)),
            stall=None if stall is None else (max(0, min(stall[0], n)), stall[1]),
            delay=delay,
            first=first,
        )

    async def _close_websockets(self, app: web.Application) -> None:
        """Close the open WebSockets when the app shuts down."""
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
                    body = loads(raw)
                except DECODE_ERRORS:
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
                return body, error_response(
                    family, status, f"Injected failure {status}", retry_after
                )
        if not self._key_ok(request):
            msg = "Incorrect API key provided" if family == OPENAI else "invalid x-api-key"
            if family == GEMINI:
                msg = "API key not valid. Please pass a valid API key."
            return body, error_response(family, 401, msg)
        if need_body and (bad_json or not isinstance(body, dict)):
            return body, error_response(family, 400, "Request body must be a JSON object")
        return body, None

    async def _turn(
        self, request: web.Request, family: str, counted: Callable[[dict[str, Any]], Any]
    ) -> Turn | web.StreamResponse:
        """The prelude of a generation request, then its :class:`Turn` (usage counted over
        ``counted(body)``, a misreport mode taken from the queue), or the early response."""
        body, early = await self._prelude(request, family, need_body=True)
        if early is not None:
            return early
        model = str(body.get("model") or UNKNOWN_MODEL)
        usage = count_usage(model, counted(body), self.chunks)
        pieces = reply_pieces(model, self.chunks)
        return Turn(body, model, usage, pieces, self._pop(self._usage_modes))

    async def _emit(
        self,
        request: web.Request,
        events: Iterable[Event],
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
        self.open_streams += 1
        self.peak_streams = max(self.peak_streams, self.open_streams)
        try:
            await self._wait_for_company()
            return await self._emit_paced(request, resp, events, frame, plan)
        finally:
            self.open_streams -= 1

    async def _wait_for_company(self) -> None:
        """Hold this stream until `hold_until_open`'s count is open at once (or its timeout)."""
        if self._together is None:
            return
        count, timeout = self._together
        if self._all_open is None:
            self._all_open = asyncio.Event()
        if self.open_streams >= count:
            self._all_open.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_open.wait(), timeout)

    async def _emit_paced(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        events: Iterable[Event],
        frame: Callable[[str | None, Any], bytes],
        plan: StreamPlan,
    ) -> web.StreamResponse:
        """Write the events one by one with the plan's delays, cuts and stalls."""
        idx = 0
        post_gated = False
        for kind, name, payload in events:
            if kind == CONTENT or (kind == POST and not post_gated):
                post_gated = post_gated or kind == POST
                if not await self._gate(idx, plan, kind == CONTENT):
                    self._abort(request)
                    return resp
                idx += kind == CONTENT
            await resp.write(frame(name, payload))
        return resp

    async def _gate(self, idx: int, plan: StreamPlan, is_content: bool) -> bool:
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
            return json_response({"ok": False, "error": "body must be JSON with an 'action'"}, 400)
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
            return json_response({"ok": True})
        fn = methods.get(action)
        if fn is None:
            return json_response({"ok": False, "error": f"unknown action {action!r}"}, 400)
        try:
            fn(**body)
        except TypeError as exc:
            return json_response({"ok": False, "error": str(exc)}, 400)
        return json_response({"ok": True})

    async def _h_requests(self, request: web.Request) -> web.Response:
        return json_response([r.to_dict() for r in self.requests])

    async def _h_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return json_response({"ok": True})

    async def _h_not_found(self, request: web.Request) -> web.Response:
        family = family_for(request)
        if request.method == "POST":
            # Still record unknown API calls: handy when debugging a gateway.
            await self._prelude(request, family, need_body=False)
        return error_response(family, 404, f"Unknown route {request.method} {request.path}")
