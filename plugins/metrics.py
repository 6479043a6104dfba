"""Prometheus metrics at `GET /metrics`: requests, tokens, cost and latency per model.

Uses the official `prometheus_client`. With several worker processes each process serves its
own counters (scrape each, or run one worker per container as is usual).
"""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """The gateway's collectors, in a registry of their own (one per Gateway)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("family", "endpoint", "model", "provider", "status")
        self.requests = Counter(
            "tokone_requests", "Finished calls.", labels, registry=self.registry
        )
        self.tokens = Counter(
            "tokone_tokens", "Tokens metered.", ("model", "kind"), registry=self.registry
        )
        self.cost = Counter(
            "tokone_cost_micro_units", "Micro-units charged.", ("model",), registry=self.registry
        )
        self.upstream_failures = Counter(
            "tokone_upstream_failures",
            "Upstream attempts that failed, per channel and reason (pool_exhausted, timeout, "
            "unreachable, http_NNN); a failed attempt may still have failed over.",
            ("provider", "reason"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "tokone_request_duration_seconds",
            "Time from arrival to the last byte.",
            ("family", "endpoint"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


def metrics_of(gateway: Gateway) -> Metrics:
    """This gateway's collectors (created on first use)."""
    found = gateway.state.get("metrics")
    if found is None:
        found = gateway.state["metrics"] = Metrics()
    return found


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Count the call, its failed upstream attempts, its tokens, its cost and its latency.

    Only positive amounts are added (a Prometheus counter refuses a negative increment),
    so a bad number never makes this raise.
    """
    m = metrics_of(gateway)
    m.requests.labels(
        call.family.value, call.endpoint, call.model, outcome.provider, str(outcome.status)
    ).inc()
    for attempt in call.failed_attempts:
        m.upstream_failures.labels(attempt.provider, attempt.reason).inc()
    usage = outcome.usage
    if positive(usage.input_tokens):
        m.tokens.labels(call.model, "input").inc(usage.input_tokens)
    if positive(usage.output_tokens):
        m.tokens.labels(call.model, "output").inc(usage.output_tokens)
    if outcome.charge is not None and positive(outcome.charge.amount):
        m.cost.labels(call.model).inc(outcome.charge.amount)
    latency = outcome.latency_ms / 1000
    m.latency.labels(call.family.value, call.endpoint).observe(max(latency, 0.0))


def positive(value: object) -> bool:
    """Whether `value` is a number a counter may be increased by (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@hookimpl
def routes(gateway: Gateway) -> list[Any]:
    """`GET /metrics` in the Prometheus text format."""

    @get("/metrics", name="metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        body = generate_latest(metrics_of(gateway).registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return [metrics]
