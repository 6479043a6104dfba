"""The way of a request: authenticate, route, admit, send with failover, price, meter.

One pipeline serves every endpoint family and transport; the family modules of the inference
ingress (:mod:`tokone.core.http.inference`) build a :class:`Call` and hand it here, and get
back a :class:`~tokone.core.types.Reply` (bytes or a stream) that the ingress writes to ASGI.
A refusal is raised as a :class:`GatewayError`, which the ingress answers in the family's
error shape.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncGenerator, Callable
from functools import partial

import msgspec
from tokone.core.errors import GatewayError, error_bytes, sse_error_event
from tokone.core.gateway import Gateway, gather_awaitables
from tokone.core.health import health
from tokone.core.tokens import MAX_TOKENS, token_count
from tokone.core.types import (
    Call,
    Candidate,
    Charge,
    FailedAttempt,
    Outcome,
    Principal,
    Reply,
    Usage,
)
from tokone.core.upstream import StreamRelay, UpstreamError, UpstreamReply

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def authenticate(gateway: Gateway, key: str | None) -> Principal:
    """Resolve the client's key or raise 401; known-but-unusable keys raise 403 in the hook."""
    if not key:
        raise GatewayError(
            "authentication",
            "Missing API key. Send it as 'Authorization: Bearer <key>', 'x-api-key' or "
            "'x-goog-api-key'.",
        )
    principal = gateway.hook.authenticate(key=key, gateway=gateway)
    if inspect.isawaitable(principal):
        principal = await principal
    if principal is None:
        raise GatewayError("authentication", f"Incorrect API key provided: {mask(key)}.")
    return principal


def mask(key: str) -> str:
    """A key as it may appear in a message: never more than its first and last few characters."""
    return key[:5] + "…" + key[-2:] if len(key) > 10 else "…"


async def run(gateway: Gateway, call: Call) -> Reply:
    """Serve one admitted-and-authenticated inference call; raise GatewayError to refuse it.

    A whole reply is metered once it has been written (`Reply.after_send`); a stream is
    metered by :func:`relay` however it ends.
    """
    candidate, reply = await start(gateway, call)
    if reply.stream is None:
        outcome = finish(gateway, call, candidate, reply.status, reply.usage)
        # The upstream's content-type becomes the media type (the writer drops the header).
        headers = {**reply.headers, **call.response_headers, "x-request-id": call.request_id}
        return Reply(
            reply.status,
            reply.body,
            headers,
            reply.headers.get("content-type", "application/json"),
            after_send=partial(meter, gateway, call, outcome),
        )
    return Reply(
        reply.status,
        headers={**SSE_HEADERS, **call.response_headers, "x-request-id": call.request_id},
        media_type="text/event-stream",
        stream=relay(gateway, call, candidate, reply),
    )


async def start(gateway: Gateway, call: Call) -> tuple[Candidate, UpstreamReply]:
    """Route and admit `call`, then open it upstream (with failover); raise GatewayError.

    Shared by every transport (HTTP here, the Responses WebSocket in `routes_responses_ws`).
    A call refused after admission is metered here, so its holds are released; a call that
    got a reply must be metered by the caller (`relay` does it for streams).
    """
    candidates = gateway.hook.route(call=call, gateway=gateway) or []
    if not candidates:
        raise GatewayError(
            "model_not_found",
            f"The model '{call.model}' does not exist or you do not have access to it. "
            "GET /v1/models lists the models your key can use.",
            param="model",
        )
    try:
        await gather_awaitables(gateway.hook.admit(call=call, gateway=gateway))
        candidate, reply = await open_upstream(gateway, call, candidates)
    except GatewayError as error:
        meter(
            gateway,
            call,
            Outcome(status=error.status, usage=Usage(), charge=None, error=error.message),
        )
        raise
    except BaseException as error:  # cancelled (client gone) or a bug: release the hold
        meter(
            gateway,
            call,
            Outcome(status=499, usage=Usage(), charge=None, error=type(error).__name__),
        )
        raise
    return candidate, reply


async def open_upstream(
    gateway: Gateway, call: Call, candidates: list[Candidate]
) -> tuple[Candidate, UpstreamReply]:
    """Try the candidates in order until one answers; fail over only on retryable errors.

    At most `[routing] max_attempts` candidates are tried, each within its provider's
    connect and first-byte timeouts. A candidate whose circuit breaker no longer lets a
    request through (it opened meanwhile, or another request holds its half-open probe) is
    skipped. Every attempt's result feeds the channel's health; a failure after the reply
    has started is reported by the `health` plugin's `meter`.
    """
    channels = health(gateway)
    budget = gateway.config.routing.max_attempts
    last: UpstreamError | None = None
    for candidate in candidates:
        name = candidate.provider.name
        if budget <= 0:
            break
        if not channels.acquire(candidate.provider):
            continue
        budget -= 1
        try:
            reply = await candidate.adapter.send(call, candidate.upstream_model)
        except UpstreamError as error:
            last = error
            call.failed_attempts.append(FailedAttempt(name, failure_reason(error)))
            if not error.retryable:  # the upstream answered: the request itself is refused
                channels.succeeded(name)
                break
            channels.failed(name, str(error), error.retry_after)
            continue
        except BaseException:  # cancelled (client gone) or a bug: no verdict on the channel
            channels.release(name)
            raise
        channels.succeeded(name)
        return candidate, reply
    if last is None:
        raise GatewayError(
            "unavailable",
            f"No healthy upstream for the model '{call.model}' right now; try again shortly.",
            headers={"retry-after": "1"},
        )
    raise upstream_failure(last)


def failure_reason(error: UpstreamError) -> str:
    """Why an attempt failed, as a short label (see :class:`FailedAttempt`)."""
    if error.pool_exhausted:
        return "pool_exhausted"
    if error.timeout:
        return "timeout"
    return f"http_{error.status}" if error.status else "unreachable"


def upstream_failure(error: UpstreamError) -> GatewayError:
    """The client-facing error for an upstream that could not serve the call."""
    if error.timeout:
        return GatewayError("timeout", f"Upstream timed out: {error}")
    if error.status in (401, 403):
        return GatewayError("upstream", "The upstream rejected the gateway's credentials.")
    if 400 <= error.status < 500 and error.status != 429:
        kind = "not_found" if error.status == 404 else "invalid_request"
        return GatewayError(kind, upstream_message(error), status=error.status)
    if error.status == 429:
        headers = {"retry-after": f"{error.retry_after:g}"} if error.retry_after else {}
        return GatewayError(
            "unavailable", "All upstreams for this model are rate limited.", headers=headers
        )
    return GatewayError("upstream", f"Upstream failed: {error}")


def upstream_message(error: UpstreamError) -> str:
    """The upstream's own error message, if its body has one."""
    try:
        body = msgspec.json.decode(error.body)
        inner = body.get("error", body)
        return str(inner.get("message") or inner) if isinstance(inner, dict) else str(inner)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, AttributeError):
        return error.body.decode(errors="replace")[:500] or str(error)


async def relay(
    gateway: Gateway,
    call: Call,
    candidate: Candidate,
    reply: UpstreamReply,
    error_event: Callable[[GatewayError], bytes] | None = None,
) -> AsyncGenerator[bytes, None]:
    """Relay a stream chunk by chunk; meter what was delivered however the stream ends.

    A failure after the first byte ends the stream with `error_event(failure)` (by default
    the relay's own framing of the family's error, see `StreamRelay.error_event`, else the
    family's SSE error event, see :func:`sse_error_event`). The usage is completed by
    :func:`stream_usage`.
    """
    relay_state = reply.relay
    assert reply.stream is not None and relay_state is not None
    status, error_message = reply.status, None
    try:
        async for chunk in reply.stream:
            out = relay_state.feed(chunk)
            if out:
                yield out
        tail = relay_state.finish()
        if tail:
            yield tail
        if not relay_state.finished:
            raise UpstreamError(f"{candidate.provider.name}: stream ended before completing")
    except UpstreamError as error:
        status, error_message = (504 if error.timeout else 502), str(error)
        failure = GatewayError(
            "timeout" if error.timeout else "upstream", f"Stream failed: {error}"
        )
        if error_event is not None:
            yield error_event(failure)
        else:
            framed = relay_state.error_event(error_bytes(call.family, failure))
            yield framed if framed is not None else sse_error_event(call.family, failure)
    except BaseException as error:  # client went away (cancelled) or generator closed
        if not relay_state.finished:  # gone after the terminal event is a completed call
            status, error_message = 499, type(error).__name__
        raise
    finally:
        await reply.aclose()
        outcome = finish(gateway, call, candidate, status, stream_usage(call, relay_state))
        outcome.error = error_message
        meter(gateway, call, outcome)


def stream_usage(call: Call, relay_state: StreamRelay) -> Usage:
    """The usage to bill for a relayed stream, however it ended.

    Each side is taken as the upstream reported it when it did (`saw_input`,
    `saw_output`) and estimated otherwise: the input from the request
    (`Call.input_estimate`), the output from the text delivered (never below the count
    reported so far); an estimated side marks the usage estimated.
    """
    usage = relay_state.usage
    if relay_state.saw_input and relay_state.saw_output:
        return usage
    return usage.estimate_missing(
        None if relay_state.saw_input else call.input_estimate,
        None if relay_state.saw_output else relay_state.delivered_chars,
    )


USAGE_COUNTS = ("input_tokens", "output_tokens", "cached_input_tokens")


def sane_usage(gateway: Gateway, call: Call, usage: Usage) -> Usage:
    """Clamp counts no adapter should have produced: each a sane integer, cached <= input.

    The adapters already read upstream numbers this way; this is the core's last guard
    for third-party ones. An insane count becomes 0, is logged (`usage_invalid`, with the
    request id) and marks the usage estimated.
    """
    for name in USAGE_COUNTS:
        value = getattr(usage, name)
        if type(value) is int and 0 <= value <= MAX_TOKENS:
            continue
        gateway.log.warning(
            "usage_invalid", request_id=call.request_id, field=name, value=repr(value)
        )
        setattr(usage, name, token_count(value) or 0)
        usage.estimated = True
    usage.cached_input_tokens = min(usage.cached_input_tokens, usage.input_tokens)
    return usage


def finish(
    gateway: Gateway, call: Call, candidate: Candidate, status: int, usage: Usage
) -> Outcome:
    """Price the usage and build the outcome the meter hook sees.

    The usage is made sane first (see :func:`sane_usage`), whichever adapter produced it.
    """
    sane_usage(gateway, call, usage)
    charge: Charge | None = None
    if usage.input_tokens or usage.output_tokens:
        charge = gateway.hook.price(call=call, usage=usage, gateway=gateway)
    return Outcome(
        status=status,
        usage=usage,
        charge=charge,
        provider=candidate.provider.name,
        upstream_model=candidate.upstream_model,
        latency_ms=(time.perf_counter() - call.started) * 1000,
    )


def meter(gateway: Gateway, call: Call, outcome: Outcome) -> None:
    """Hand a finished call to every `meter` implementation, each isolated from the others.

    The implementations run one by one in pluggy's order (``tryfirst`` ones first: the
    ledger, which settles the hold and records the call); one that raises is logged as
    `meter_failed` with the request id and the plugin's name, and the rest still run.
    Nothing raises into the response. Wrappers are not supported on `meter`.
    """
    kwargs = {"call": call, "outcome": outcome, "gateway": gateway}
    for impl in reversed(gateway.hook.meter.get_hookimpls()):
        if impl.hookwrapper or impl.wrapper:
            continue
        try:
            impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception:
            gateway.log.exception(
                "meter_failed", request_id=call.request_id, plugin=impl.plugin_name
            )
