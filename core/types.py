"""The values that travel through the pipeline and the hooks."""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from tokone.core.tokens import estimate_chars

if TYPE_CHECKING:
    from tokone.core.config import ProviderConfig
    from tokone.core.upstream import Adapter


GEMINI_ACTIONS = (
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
)
"""Gemini's `models/{model}:{action}` actions: the endpoint names of Gemini-family calls."""


class Family(enum.StrEnum):
    """The API dialect a request arrived in; it decides the error shape."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GEMINI = "gemini"


@dataclass(slots=True)
class Principal:
    """Who is calling: the authenticated key and its account."""

    key_id: int
    account_id: int
    account_name: str
    group: str
    key_name: str = ""
    models: tuple[str, ...] = ()
    """Models the key may use; empty means all."""
    status: str = "enabled"
    expires_at: float | None = None
    multiplier_override: float | None = None
    limits: dict[str, int] = field(default_factory=dict)
    spend_limit: int | None = None
    """The key's total spend cap in micro-units (None: none set on the key)."""
    period_limit: int | None = None
    """The key's spend cap per `limit_period` in micro-units (None: none set on the key)."""
    limit_period: str | None = None
    """`day`, `week` or `month` (None: the group default, if any)."""
    limit_timezone: str = ""
    """The IANA time zone whose midnight starts a period ("" : the configured default)."""
    allowed_ips: tuple[str, ...] = ()
    """CIDR ranges the key may be used from; empty means anywhere (or the group default)."""
    account_budget: int | None = None
    """The account's spend cap per `account_budget_period` (micro-units; None: no budget)."""
    account_budget_period: str | None = None


@dataclass(slots=True)
class Usage:
    """Tokens one call consumed. `input_tokens` includes cached and cache-write tokens."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    service_tier: str | None = None
    estimated: bool = False
    """True when the gateway counted the tokens itself (upstream sent none)."""

    def estimate_missing(self, input_tokens: int | None, output_chars: int | None) -> Usage:
        """Fill in the sides the upstream did not report and mark the usage estimated.

        `input_tokens` (the gateway's prompt estimate) replaces an unreported input when not
        None; `output_chars` (characters of text delivered) estimates an unreported output
        when not None, never below what the upstream reported so far.
        """
        if input_tokens is not None:
            self.input_tokens = max(self.input_tokens, input_tokens)
            self.cached_input_tokens = min(self.cached_input_tokens, self.input_tokens)
            self.estimated = True
        if output_chars is not None:
            self.output_tokens = max(self.output_tokens, estimate_chars(output_chars))
            self.estimated = True
        return self


@dataclass(slots=True)
class Charge:
    """What a call costs, in integer micro-units, and the factors that made it."""

    amount: int
    multiplier: float = 1.0
    tier: str = "default"
    tier_factor: float = 1.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Candidate:
    """One upstream a call may be sent to, as the `route` hook picked it."""

    provider: ProviderConfig
    adapter: Adapter
    upstream_model: str


@dataclass(slots=True, frozen=True)
class ClientAddress:
    """Where a call came from, as the ingress saw it; which proxy to trust is a plugin's call."""

    peer: str | None = None
    """The TCP peer's IP address (ASGI ``scope["client"]``); None when the server gave none."""
    forwarded_for: str = ""
    """The request's ``X-Forwarded-For`` headers, comma-joined ("" when absent)."""
    forwarded: str = ""
    """The request's ``Forwarded`` (RFC 7239) headers, comma-joined ("" when absent)."""


@dataclass(slots=True, frozen=True)
class FailedAttempt:
    """One upstream attempt that failed: the channel and why.

    `reason` is ``pool_exhausted`` (the channel's own connection pool was full), ``timeout``,
    ``unreachable`` (no answer: connect or read error) or ``http_NNN`` (the upstream's status).
    """

    provider: str
    reason: str


@dataclass(slots=True)
class Call:
    """One inference request on its way through the gateway."""

    request_id: str
    family: Family
    endpoint: str
    """`chat.completions`, `completions`, `embeddings`, `responses`, `messages`, ..."""
    model: str
    raw: bytes = b""
    """The request body exactly as the client sent it."""
    stream: bool = False
    principal: Principal | None = None
    client: ClientAddress = field(default_factory=ClientAddress)
    """The client's address (the ingress sets it; the `ip_allow` plugin checks it)."""
    service_tier: str | None = None
    max_output_tokens: int | None = None
    choices: int = 1
    """How many alternative outputs the call may generate (OpenAI's `n` / `best_of`, Gemini's
    `candidateCount`); the balance hold covers the output cap once for each."""
    hold: int = 0
    """Micro-units held for this call at admission (0 when nothing was held)."""
    started: float = field(default_factory=time.perf_counter)
    api_version: str | None = None
    """The API version the client asked for: Anthropic's `anthropic-version` header, or the
    version in a Gemini path (`v1beta`, `v1`); None when it sent none."""
    beta: str | None = None
    """Anthropic's `anthropic-beta` header (comma-joined), if the client sent one."""
    beta_query: bool = False
    """True when an Anthropic client called with `?beta=true`."""
    json_array: bool = False
    """True when a Gemini client streams without `?alt=sse` and expects one JSON array."""
    failed_attempts: list[FailedAttempt] = field(default_factory=list)
    """The upstream attempts that failed before the call was answered (or refused), in order;
    the failover loop appends them, the `metrics` plugin counts them."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Scratch space private to one plugin or adapter; the core reads none of it."""
    response_headers: dict[str, str] = field(default_factory=dict)
    """Headers plugins add to the client's response (e.g. rate-limit state)."""
    _json: dict[str, Any] | None = None
    _input_estimate: int | None = None

    @property
    def input_estimate(self) -> int:
        """The gateway's own count of the prompt's tokens, from the raw body (computed once).

        A deliberate over-estimate (every byte of the body counts); it sizes the hold and
        stands in for the input of a reply whose upstream reported none.
        """
        if self._input_estimate is None:
            self._input_estimate = estimate_chars(len(self.raw))
        return self._input_estimate

    def json(self) -> dict[str, Any]:
        """The body decoded as a JSON object (decoded once, on first use).

        A body that is not one (numbers out of range, nesting too deep, not an object) raises
        a 400 `GatewayError`, never a decoder error that would become a 500.
        """
        if self._json is None:
            from tokone.core.errors import GatewayError  # errors imports this module

            try:
                decoded = msgspec.json.decode(self.raw) if self.raw else {}
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
                raise GatewayError(
                    "invalid_request", f"The request body is not valid JSON: {exc}"
                ) from None
            if not isinstance(decoded, dict):
                raise GatewayError("invalid_request", "The request body must be a JSON object.")
            self._json = decoded
        return self._json


@dataclass(slots=True)
class Outcome:
    """How a call ended, handed to the `meter` hook."""

    status: int
    usage: Usage
    charge: Charge | None
    provider: str = ""
    upstream_model: str = ""
    latency_ms: float = 0.0
    error: str | None = None


@dataclass(slots=True)
class Reply:
    """An HTTP answer as the pipeline and the ingress build it; the ingress writes it to ASGI.

    Either a whole `body` or a `stream` of byte chunks (closed by the writer however it
    ends). `media_type` is the one `content-type` the reply carries, and the writer sets
    `content-length`: a `content-type` or `content-length` in `headers` is never written.
    `after_send`, when set, runs once the whole body has been handed to the server (how a
    non-streamed call is metered after its response, never delaying it).
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"
    stream: AsyncGenerator[bytes, None] | None = None
    after_send: Callable[[], None] | None = None
