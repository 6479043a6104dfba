"""Channel health, the one owner: circuit breakers, retry-after deferral and manual switches.

architecture: this plugin answers the `channel_health` hook with a :class:`Health`, the object
the core's failover loop and the router ask (see :mod:`tokone.core.health`, which also
explains what happens without it: every channel always tried, switches refused). It keeps,
per channel (one `[[providers]]` entry), in each process:

* a **circuit breaker**: `[routing] failure_threshold` consecutive failures open it for
  `cooldown_seconds`; after that it is half-open and lets exactly one request through as a
  probe; the probe's success closes it, its failure opens it again for twice as long (up to
  `max_cooldown_seconds`). The breaker only decides whether a channel may be *tried*; a
  skipped channel costs the client nothing because the core fails over before the first byte.
  The core reports every attempt before the first byte; a stream that broke after it
  (reported to `meter` as 502/504 with the provider that served it) is counted here.
* a **retry-after deferral**: an upstream that answered with `retry-after: N` is tried only
  as a last resort for N seconds.
* the **manual switches** from the `channel_states` table (`tokone providers disable`,
  `POST /admin/providers/{name}/disable`), shared by every process: re-read in the
  background every ``[plugins.health] refresh_seconds`` (default 1), so the request path
  never waits on the database.

Why not a library: aiobreaker, pybreaker and purgatory wrap one call in a context manager
and decide on its exception there. Here the verdict on a stream arrives long after the
request was sent (in `meter`), a router must ask "may I try it?" without claiming the probe,
and the cooldown grows exponentially; none of them offers those, so this is a small explicit
state machine instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog
from tokone.core.config import ProviderConfig, RefreshSettings, RoutingConfig, refresh_seconds
from tokone.core.gateway import Gateway
from tokone.core.health import ManualSwitch, configured_state, health, read_switches
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome

BROKEN_STREAM_STATUSES = frozenset({502, 504})
RECENT_FAILURES = 20
"""Failures remembered per channel for status pages."""
RECENT_WINDOW_SECONDS = 300.0
"""What counts as a recent failure in status pages."""

log = structlog.get_logger("tokone")


class BreakerState(enum.StrEnum):
    """Where a circuit breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Breaker:
    """A circuit breaker with an exponentially growing cooldown and a single-probe half-open.

    Times are `time.monotonic()` seconds. `trips` counts the opens since the last success:
    0 means closed; the n-th open lasts `cooldown * 2**(n-1)`, capped at `max_cooldown`.
    """

    threshold: int
    cooldown: float
    max_cooldown: float
    failures: int = 0
    """Consecutive failures since the last success."""
    trips: int = 0
    open_until: float = 0.0
    probe_until: float = 0.0
    """While a probe is in flight (half-open), no other request is let through until then."""

    def state(self, now: float) -> BreakerState:
        """Closed, open (cooling down) or half-open (waiting for, or running, a probe)."""
        if not self.trips:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self.open_until else BreakerState.HALF_OPEN

    def allows(self, now: float) -> bool:
        """Whether a request may be tried now (closed, or half-open with no probe running)."""
        state = self.state(now)
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and self.probe_until <= now
        )

    def wait(self, now: float) -> float:
        """Seconds until a request may be tried (0 if one may be now)."""
        if self.allows(now):
            return 0.0
        if self.state(now) is BreakerState.OPEN:
            return self.open_until - now
        return self.probe_until - now

    def acquire(self, now: float, lease: float) -> bool:
        """Claim the right to try a request now; a half-open breaker grants one probe.

        The probe claim lapses after `lease` seconds in case its verdict never arrives.
        """
        if not self.allows(now):
            return False
        if self.trips:
            self.probe_until = now + lease
        return True

    def release(self) -> None:
        """Give back a probe claim without a verdict (the request was cancelled)."""
        self.probe_until = 0.0

    def success(self) -> bool:
        """The channel answered; return True if that closed an open breaker."""
        reopened = self.trips > 0
        self.failures = self.trips = 0
        self.open_until = self.probe_until = 0.0
        return reopened

    def failure(self, now: float) -> bool:
        """The channel failed; return True if that opened (or re-opened) the breaker.

        A failure reported while the breaker is already open (a request that started before
        it opened) changes nothing.
        """
        state = self.state(now)
        if state is BreakerState.OPEN:
            return False
        self.failures += 1
        if state is BreakerState.CLOSED and self.failures < self.threshold:
            return False
        self.trips += 1
        self.open_until = now + self.cooldown_for(self.trips)
        self.probe_until = 0.0
        return True

    def cooldown_for(self, trips: int) -> float:
        """The length of the `trips`-th consecutive open."""
        return min(self.cooldown * 2 ** (trips - 1), self.max_cooldown)


@dataclass(slots=True)
class Channel:
    """What one process knows about one channel's health."""

    breaker: Breaker
    deferred_until: float = 0.0
    """Monotonic time before which the upstream asked not to be called (retry-after)."""
    recent: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=RECENT_FAILURES))
    """(wall-clock time, message) of the latest failures."""


class Health:
    """Per-process health of every channel, plus the shared manual switches (a ChannelHealth)."""

    obeys_switches = True

    def __init__(self, routing: RoutingConfig, providers: list[ProviderConfig]) -> None:
        self.routing = routing
        self.providers = {p.name: p for p in providers}
        self.channels: dict[str, Channel] = {}
        self.switches: dict[str, ManualSwitch] = {}
        """Manual switches by provider name (refreshed from the database)."""
        self.switch_writes = 0
        """How many switches this process wrote; a refresh overlapping one is dropped."""

    def channel(self, name: str) -> Channel:
        """The health record of channel `name` (created on first use)."""
        found = self.channels.get(name)
        if found is None:
            r = self.routing
            breaker = Breaker(r.failure_threshold, r.cooldown_seconds, r.max_cooldown_seconds)
            found = self.channels[name] = Channel(breaker)
        return found

    def set_switch(self, name: str, switch: ManualSwitch) -> None:
        """Apply a switch this process just wrote to the database."""
        self.switches[name] = switch
        self.switch_writes += 1

    def disabled_by_hand(self, name: str) -> bool:
        """Whether an operator switched the channel off."""
        switch = self.switches.get(name)
        return switch is not None and switch.disabled

    def usable(self, name: str, now: float) -> bool:
        """Whether the router may offer the channel now (not switched off, breaker allows)."""
        return not self.disabled_by_hand(name) and self.channel(name).breaker.allows(now)

    def deferred_for(self, name: str, now: float) -> float:
        """Seconds left of the channel's retry-after (0 when it may be tried normally)."""
        return max(0.0, self.channel(name).deferred_until - now)

    def usable_in(self, names: list[str], now: float) -> float | None:
        """Seconds until the first of `names` may be tried again; None if all are switched off."""
        waits = [self.channel(n).breaker.wait(now) for n in names if not self.disabled_by_hand(n)]
        return max(0.0, min(waits)) if waits else None

    def acquire(self, provider: ProviderConfig) -> bool:
        """Claim an attempt on the channel (a half-open breaker grants only one probe)."""
        if self.disabled_by_hand(provider.name):
            return False
        lease = provider.timeouts.connect + provider.timeouts.first_byte
        return self.channel(provider.name).breaker.acquire(time.monotonic(), lease)

    def release(self, name: str) -> None:
        """Give back an attempt that ended without a verdict (cancelled)."""
        self.channel(name).breaker.release()

    def succeeded(self, name: str) -> None:
        """The channel answered."""
        if self.channel(name).breaker.success():
            log.info("channel_recovered", provider=name)

    def failed(self, name: str, message: str, retry_after: float | None = None) -> None:
        """The channel failed (connect error, timeout, 429, 5xx, broken stream)."""
        now = time.monotonic()
        channel = self.channel(name)
        channel.recent.append((time.time(), message))
        if retry_after:
            channel.deferred_until = max(channel.deferred_until, now + retry_after)
        if channel.breaker.failure(now):
            log.warning(
                "channel_cooldown",
                provider=name,
                seconds=round(channel.breaker.open_until - now, 3),
                failures=channel.breaker.failures,
                error=message,
            )

    def status(self, name: str) -> dict[str, Any]:
        """The channel's state for status pages: state, cooldown end, recent failures."""
        now, wall = time.monotonic(), time.time()
        channel = self.channel(name)
        breaker = channel.breaker
        switch = self.switches.get(name)
        state = configured_state(self.providers.get(name), switch)
        if state is None:
            state = {
                BreakerState.OPEN: "cooldown",
                BreakerState.HALF_OPEN: "half_open",
                BreakerState.CLOSED: "healthy",
            }[breaker.state(now)]
        recent = [(t, m) for t, m in channel.recent if t >= wall - RECENT_WINDOW_SECONDS]
        return {
            "state": state,
            "breaker": breaker.state(now).value,
            "cooldown_until": wall + breaker.open_until - now if breaker.trips else None,
            "retry_after_until": (
                wall + channel.deferred_until - now if channel.deferred_until > now else None
            ),
            "consecutive_failures": breaker.failures,
            "recent_failures": len(recent),
            "last_error": recent[-1][1] if recent else None,
            "disabled_reason": switch.reason if switch is not None and switch.disabled else None,
        }


@hookimpl
def plugin_config_schema() -> type[RefreshSettings]:
    """`[plugins.health] refresh_seconds`: how often the manual switches are re-read."""
    return RefreshSettings


@hookimpl
def channel_health(gateway: Gateway) -> Health:
    """The channel health the core's failover loop and router ask (one per gateway)."""
    return Health(gateway.config.routing, gateway.config.providers)


def own_health(gateway: Gateway) -> Health | None:
    """This gateway's channel health if this plugin is the one keeping it."""
    channels = health(gateway)
    return channels if isinstance(channels, Health) else None


async def refresh(gateway: Gateway, channels: Health) -> None:
    """Re-read the manual switches from the database (in a thread).

    A read that overlapped a switch written by this process is dropped: it may predate it.
    """
    writes = channels.switch_writes
    switches = await asyncio.to_thread(read_switches, gateway.engine)
    if channels.switch_writes == writes:
        channels.switches = switches


async def _refresh_forever(gateway: Gateway, channels: Health, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await refresh(gateway, channels)
        except Exception as exc:  # the database is briefly unreachable: keep the last view
            gateway.log.warning("channel_states_refresh_failed", error=repr(exc))


@hookimpl
async def startup(gateway: Gateway) -> None:
    """Load the manual switches before serving, then keep them fresh in the background."""
    channels = own_health(gateway)
    if channels is None:  # another plugin keeps channel health
        return
    try:
        await refresh(gateway, channels)
    except Exception as exc:
        gateway.log.warning("channel_states_refresh_failed", error=repr(exc))
    gateway.state["health_refresher"] = asyncio.create_task(
        _refresh_forever(gateway, channels, refresh_seconds(gateway.plugin_config("health")))
    )


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    """Stop the background refresh."""
    task = gateway.state.pop("health_refresher", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """A reply that broke off after its first byte is a failure of the channel that sent it."""
    channels = own_health(gateway)
    if channels is not None and outcome.provider and outcome.status in BROKEN_STREAM_STATUSES:
        channels.failed(outcome.provider, outcome.error or f"status {outcome.status}")
