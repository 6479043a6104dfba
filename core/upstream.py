"""The adapter contract: what every provider adapter provides, and the HTTP plumbing they share.

Architecture: this module is the core's side of the boundary with `tokone.providers`. The
core (pipeline, routes, gateway) knows adapters only through :class:`Adapter`,
:class:`UpstreamReply`, :class:`UpstreamError` and :class:`StreamRelay` defined here; each
provider module subclasses them and registers its adapter through the `register_providers`
hook, so the core imports no provider (an import-linter contract holds it).

An adapter knows one upstream wire format: how to authenticate upstream (its own key from
config, never the client's), how to send a call, how to read usage out of a reply, and how
to read usage incrementally out of a stream while relaying it untouched (:class:`StreamRelay`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar

import aiohttp
import httpx
import structlog
from httpx_aiohttp import AiohttpTransport
from httpx_aiohttp.transport import AiohttpResponseStream
from tokone.core.config import ProviderConfig
from tokone.core.errors import GatewayError
from tokone.core.tokens import token_count
from tokone.core.types import Call, Family, Usage

logging.getLogger("httpx").setLevel(logging.WARNING)
log = structlog.get_logger("tokone")

RELAYED_HEADERS = ("content-type", "retry-after")
URL_CACHE_SIZE = 1024
"""Parsed upstream URLs kept per adapter (a wildcard channel sees one path per model name)."""

_queued: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "tokone_pool_queued", default=None
)
"""Set by `Adapter.post` for its request: a flag the pool trace raises while it waits."""


async def _on_queued_start(session: object, ctx: object, params: object) -> None:
    flag = _queued.get()
    if flag is not None:
        flag[0] = True


async def _on_queued_end(session: object, ctx: object, params: object) -> None:
    flag = _queued.get()
    if flag is not None:
        flag[0] = False


def pool_trace() -> aiohttp.TraceConfig:
    """An aiohttp trace that marks the current request while it waits for a pooled connection."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_queued_start.append(_on_queued_start)
    trace.on_connection_queued_end.append(_on_queued_end)
    trace.freeze()
    return trace


class UpstreamError(Exception):
    """The upstream answered with an error status or could not be reached.

    `retryable` says whether another candidate may be tried (connect errors, timeouts, 429,
    5xx, and 401/403: the channel's own credentials were refused, which another channel's may
    not be); `status` is the upstream's status (0 when there was no answer).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        body: bytes = b"",
        retry_after: float | None = None,
        timeout: bool = False,
        pool_exhausted: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.timeout = timeout
        self.pool_exhausted = pool_exhausted
        """The channel's own connection pool was full (not the upstream's answer)."""

    @property
    def retryable(self) -> bool:
        """Whether failing over to the next candidate makes sense."""
        return self.status in (0, 401, 403, 429) or self.status >= 500


class StreamRelay:
    """Relays an upstream SSE stream event by event, reading usage on the way.

    `feed` takes raw upstream bytes and returns the bytes to send to the client now (only
    whole events, so an adapter can drop or rewrite one); `finish` returns what is left.
    Subclasses override `on_event` to read usage (and return None to drop an event).
    """

    def __init__(self, call: Call) -> None:
        self.call = call
        self.usage = Usage()
        self.saw_input = False
        """True once the upstream reported a sane input count (`usage.input_tokens` is it)."""
        self.saw_output = False
        """True once the upstream reported a sane, final output count."""
        self.delivered_chars = 0
        """Characters of generated text sent to the client (for estimating a cut stream)."""
        self.finished = False
        """True once the upstream's terminal event has been relayed."""
        self._buffer = b""

    def feed(self, chunk: bytes) -> bytes:
        """Accept upstream bytes; return the complete events to relay now."""
        data = self._buffer + chunk if self._buffer else chunk
        if b"\r" in data:  # CRLF framing (Google's): relayed as LF; a lone CR waits in the buffer
            data = data.replace(b"\r\n", b"\n")
        end = data.rfind(b"\n\n")
        if end < 0:
            self._buffer = data
            return b""
        self._buffer = data[end + 2 :]
        return self._relay(data[: end + 2])

    def finish(self) -> bytes:
        """Flush a trailing event the upstream did not terminate with a blank line."""
        rest, self._buffer = self._buffer, b""
        return self._relay(rest + b"\n\n") if rest.strip() else b""

    def _relay(self, block: bytes) -> bytes:
        out: list[bytes] = []
        changed = False
        for event in block.split(b"\n\n"):
            if not event:
                continue
            kept = self.on_event(event)
            if kept is None:
                changed = True
                continue
            if kept is not event:
                changed = True
            out.append(kept)
        if not changed:
            return block
        return b"".join(e + b"\n\n" for e in out)

    def on_event(self, event: bytes) -> bytes | None:
        """Inspect one SSE event (without its blank line); return it, a rewrite, or None."""
        return event

    @property
    def saw_usage(self) -> bool:
        """Whether the upstream reported both sides of the usage (nothing left to estimate)."""
        return self.saw_input and self.saw_output

    def error_event(self, body: bytes) -> bytes | None:
        """Frame the error `body` (the family's error JSON) that ends a failed stream.

        None (the default) means the family's SSE error event; a relay that rewrote the
        stream into another framing (Gemini's JSON array) closes it its own way.
        """
        return None


def sane_count(call: Call, field: str, value: object) -> int | None:
    """An upstream's token count `field` if it is sane (see `token_count`), else None.

    A count that is there but not sane (negative, fractional, a string, a bool, absurdly
    large) is logged as `upstream_usage_invalid` with the request id; the caller then
    treats that side of the usage as unreported, so the gateway's estimate is billed.
    """
    count = token_count(value)
    if count is None and value is not None:
        log.warning(
            "upstream_usage_invalid", request_id=call.request_id, field=field, value=repr(value)
        )
    return count


def sse_data(event: bytes) -> bytes | None:
    """The `data:` payload of an SSE event (lines joined), or None if it has none."""
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]
    parts = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(parts) if parts else None


@dataclass(slots=True)
class UpstreamReply:
    """An upstream's successful answer: a whole body, or a stream being relayed."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    usage: Usage = field(default_factory=Usage)
    stream: AsyncIterator[bytes] | None = None
    relay: StreamRelay | None = None
    response: httpx.Response | None = None

    async def aclose(self) -> None:
        """Release the upstream connection (and a raw stream's idle timer)."""
        if isinstance(self.stream, RawStream):
            self.stream.close()
        if self.response is not None:
            await self.response.aclose()


class Adapter:
    """Base class for provider adapters; one instance per configured provider."""

    name: ClassVar[str] = ""
    families: ClassVar[frozenset[Family]] = frozenset()
    """API families this adapter can serve natively."""

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider
        self._transport: httpx.AsyncBaseTransport | None = None
        self._urls: dict[str, httpx.URL] = {}
        t = provider.timeouts
        self._timeouts = {
            "connect": t.connect,
            "read": max(t.first_byte, t.idle),
            "write": t.idle,
            "pool": None,  # waiting for a pooled connection counts against first_byte (post)
        }
        self._stream_timeouts = {**self._timeouts, "read": None}
        """A stream read from aiohttp directly (`RawStream`) times its idle waits itself."""

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        """The pooled connection to this upstream (created on first use).

        Requests go to httpx's transport directly rather than through ``httpx.AsyncClient``:
        the client's per-request work (URL merging, cookies, auth, redirects, event hooks)
        is nothing the gateway needs and halved throughput when measured
        (bench: 5.6k vs 10.6k requests/s against the fake upstream, 32 in flight).
        """
        if self._transport is None:
            self._transport = AiohttpTransport(client=self._session)
        return self._transport

    def _session(self) -> aiohttp.ClientSession:
        """The aiohttp session behind the transport, sized by the channel's pool settings.

        Built lazily (inside the running loop) by the transport on its first request.
        `max_connections = 0` is aiohttp's "no limit"; `keepalive_expiry = 0` closes every
        connection after its call.
        """
        provider = self.provider
        keepalive = provider.keepalive_expiry
        transport = self._transport
        connector = aiohttp.TCPConnector(
            ssl=transport.ssl_context if isinstance(transport, AiohttpTransport) else True,
            limit=provider.max_connections,
            limit_per_host=0,
            keepalive_timeout=keepalive if keepalive > 0 else None,
            force_close=keepalive <= 0,
        )
        return aiohttp.ClientSession(connector=connector, trace_configs=[pool_trace()])

    def pool_exhausted_error(self) -> UpstreamError:
        """The error for a call that waited for a pooled connection until first_byte ran out.

        A timeout (retryable, so the next candidate is tried; 504 to the client if none is
        left) whose message names the pool and its size, logged as `upstream_pool_exhausted`.
        """
        provider = self.provider
        log.warning(
            "upstream_pool_exhausted",
            provider=provider.name,
            max_connections=provider.max_connections,
            waited=provider.timeouts.first_byte,
        )
        return UpstreamError(
            f"{provider.name}: connection pool exhausted (max_connections="
            f"{provider.max_connections}, all busy for {provider.timeouts.first_byte:g}s)",
            timeout=True,
            pool_exhausted=True,
        )

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    def url(self, path: str) -> httpx.URL:
        """The upstream URL for `path` under `base_url` (parsed once per path, cache bounded).

        httpx resolves dot segments (``/a/../b`` -> ``/b``) when it parses a URL, which would
        send the gateway's credentials to another path of the upstream; a path that does not
        survive parsing unchanged is refused (400) instead of being sent.
        """
        found = self._urls.get(path)
        if found is None:
            base = self.provider.base_url.rstrip("/")
            found = httpx.URL(base + path)
            wanted = httpx.URL(base).raw_path.rstrip(b"/") + path.encode("ascii", "replace")
            if found.raw_path != wanted:
                raise GatewayError(
                    "invalid_request",
                    "The request names an upstream path that is not allowed.",
                    param="model",
                )
            if len(self._urls) >= URL_CACHE_SIZE:
                self._urls.clear()
            self._urls[path] = found
        return found

    def supports(self, call: Call) -> bool:
        """Whether this adapter can serve `call` (by family and endpoint)."""
        return call.family in self.families

    async def send(self, call: Call, upstream_model: str) -> UpstreamReply:
        """Send `call` upstream; return the reply once its headers arrived.

        Raise :class:`UpstreamError` for an error status or a transport failure, before
        anything has been relayed, so the core can fail over.
        """
        raise NotImplementedError

    async def post(
        self, path: str, content: bytes, headers: dict[str, str], *, stream: bool
    ) -> httpx.Response:
        """POST to the upstream within the first-byte timeout; raise UpstreamError on failure.

        A `stream` response on the aiohttp transport is read without aiohttp's per-packet
        read timer: relay it through :meth:`stream_reply` (or :meth:`iter_stream`), whose
        :class:`RawStream` applies the idle timeout.
        """
        request = httpx.Request(
            "POST",
            self.url(path),
            content=content,
            headers=headers,
            extensions={
                "timeout": self._stream_timeouts
                if stream and isinstance(self.transport, AiohttpTransport)
                else self._timeouts
            },
        )
        queued = [False]
        token = _queued.set(queued)
        try:
            async with asyncio.timeout(self.provider.timeouts.first_byte):
                response = await self.transport.handle_async_request(request)
        except TimeoutError:
            if queued[0]:
                raise self.pool_exhausted_error() from None
            raise UpstreamError(
                f"{self.provider.name}: no response within {self.provider.timeouts.first_byte:g}s",
                timeout=True,
            ) from None
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"{self.provider.name}: timed out ({exc})", timeout=True) from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"{self.provider.name}: {type(exc).__name__}: {exc}") from None
        finally:
            _queued.reset(token)
        if response.status_code >= 400:
            body = await response.aread()
            await response.aclose()
            raise UpstreamError(
                f"{self.provider.name} answered {response.status_code}",
                status=response.status_code,
                body=body,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if not stream:
            try:
                await response.aread()
            except httpx.HTTPError as exc:
                raise UpstreamError(f"{self.provider.name}: {exc}") from None
            finally:
                await response.aclose()
        return response

    def stream_reply(self, response: httpx.Response, relay: StreamRelay) -> UpstreamReply:
        """The reply for a streamed upstream response, relayed through `relay`."""
        return UpstreamReply(
            status=response.status_code,
            headers=relayed_headers(response),
            stream=self.iter_stream(response),
            relay=relay,
            response=response,
        )

    def iter_stream(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The upstream's raw stream, with the idle-between-chunks timeout applied.

        On the aiohttp transport the chunks are read from aiohttp's stream directly
        (:class:`RawStream`: one coroutine per chunk instead of three nested async
        generators, httpx's and the transport's); any other transport goes through
        httpx's `aiter_raw` (:meth:`_httpx_stream`).
        """
        stream = response.stream
        if isinstance(stream, AiohttpResponseStream):
            return RawStream(stream._aiohttp_response.content, self.provider)
        return self._httpx_stream(response)

    async def _httpx_stream(self, response: httpx.Response) -> AsyncIterator[bytes]:
        timeouts = self.provider.timeouts
        idle = timeouts.idle
        timed = idle < timeouts.first_byte
        iterator = response.aiter_raw()
        while True:
            try:
                if timed:
                    async with asyncio.timeout(idle):
                        chunk = await anext(iterator)
                else:
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except (TimeoutError, httpx.TimeoutException):
                raise idle_error(self.provider) from None
            except httpx.HTTPError as exc:
                raise UpstreamError(f"{self.provider.name}: stream broke: {exc}") from None
            yield chunk


def idle_error(provider: ProviderConfig) -> UpstreamError:
    """The error for a stream that sent nothing for longer than the idle timeout."""
    return UpstreamError(
        f"{provider.name}: stream idle for more than {provider.timeouts.idle:g}s", timeout=True
    )


class RawStream:
    """An upstream stream read straight from aiohttp: each `__anext__` is one `readany`.

    A read that waits longer than the provider's `idle` timeout fails the stream. Instead
    of a timer per read (aiohttp's `sock_read`, re-armed on every packet, or an
    `asyncio.timeout` around every read: 2-3 us each), one watchdog timer per stream
    checks the read in progress when it fires and re-arms itself for that read's
    deadline; a read costs two clock reads. The request was sent without `sock_read`
    (`Adapter.post`), and the response headers were bounded by `first_byte`. Errors become
    :class:`UpstreamError` the way the httpx transport maps them (an idle read or a dropped
    connection: timed out; a broken payload: `stream broke`).
    """

    __slots__ = ("_content", "_idle", "_loop", "_provider", "_since", "_timer")

    def __init__(self, content: aiohttp.StreamReader, provider: ProviderConfig) -> None:
        self._content = content
        self._provider = provider
        self._idle = provider.timeouts.idle
        self._loop = asyncio.get_running_loop()
        self._since: float | None = None
        """When the read in progress started (None: no read in progress)."""
        self._timer: asyncio.TimerHandle | None = None

    def __aiter__(self) -> RawStream:
        return self

    async def __anext__(self) -> bytes:
        self._since = since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(since + self._idle, self._watch)
        try:
            chunk = await self._content.readany()
        except TimeoutError:  # the watchdog's
            raise idle_error(self._provider) from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectorError) as exc:
            self.close()
            raise UpstreamError(f"{self._provider.name}: stream broke: {exc}") from None
        except aiohttp.ClientConnectionError:  # httpx-aiohttp maps these to ConnectTimeout
            self.close()
            raise idle_error(self._provider) from None
        except aiohttp.ClientError as exc:
            self.close()
            raise UpstreamError(f"{self._provider.name}: stream broke: {exc}") from None
        except BaseException:
            self.close()
            raise
        self._since = None
        if not chunk:
            self.close()
            raise StopAsyncIteration
        return chunk

    def _watch(self) -> None:
        """The watchdog: fail a read waiting for `idle` seconds, else re-arm for its deadline."""
        self._timer = None
        since = self._since
        if since is None:  # between reads: the next read re-arms it
            return
        deadline = since + self._idle
        if self._loop.time() >= deadline:
            self._since = None
            self._content.set_exception(TimeoutError("stream idle"))
        else:
            self._timer = self._loop.call_at(deadline, self._watch)

    def close(self) -> None:
        """Stop the watchdog (the stream ended, failed or is being closed)."""
        self._since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def relayed_headers(response: httpx.Response) -> dict[str, str]:
    """The upstream response headers worth passing to the client."""
    return {h: response.headers[h] for h in RELAYED_HEADERS if h in response.headers}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `retry-after` header (numeric form), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
