"""Channel health: a circuit breaker per provider channel, retry-after hints, manual switches.

Each process keeps, per channel (one `[[providers]]` entry):

* a **circuit breaker**: `[routing] failure_threshold` consecutive failures open it for
  `cooldown_seconds`; after that it is half-open and lets exactly one request through as a
  probe; the probe's success closes it, its failure opens it again for twice as long (up to
  `max_cooldown_seconds`). The breaker only decides whether a channel may be *tried*; a
  skipped channel costs the client nothing because the core fails over before the first byte.
* a **retry-after deferral**: an upstream that answered with `retry-after: N` is tried only
  as a last resort for N seconds.
* the **manual switch** from the `channel_states` table (`tokone providers disable`),
  shared by every process; the `health` plugin re-reads it once a second in the background.

Why not a library: aiobreaker, pybreaker and purgatory wrap one call in a context manager
and decide on its exception there. Here the verdict on a stream arrives long after the
request was sent (in `meter`), a router must ask "may I try it?" without claiming the probe,
and the cooldown grows exponentially; none of them offers those, so this is a small explicit
state machine instead.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.config import Config, ProviderConfig, RoutingConfig
from tokone.core.store.tables import ChannelState

if TYPE_CHECKING:
    from tokone.core.gateway import Gateway

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


@dataclass(slots=True)
class ManualSwitch:
    """An operator's switch for a channel, as stored in `channel_states`."""

    disabled: bool
    reason: str
    updated_at: float


class Health:
    """Per-process health of every channel, plus the shared manual switches."""

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
        provider = self.providers.get(name)
        if provider is not None and not provider.enabled:
            state = "disabled (config)"
        elif switch is not None and switch.disabled:
            state = "disabled"
        elif breaker.state(now) is BreakerState.OPEN:
            state = "cooldown"
        elif breaker.state(now) is BreakerState.HALF_OPEN:
            state = "half_open"
        else:
            state = "healthy"
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


def health(gateway: Gateway) -> Health:
    """This gateway's channel health (created on first use)."""
    found = gateway.state.get("health")
    if found is None:
        found = gateway.state["health"] = Health(gateway.config.routing, gateway.config.providers)
    return found


def read_switches(engine: Engine) -> dict[str, ManualSwitch]:
    """Every manual switch in the database, by provider name."""
    with Session(engine) as session:
        rows = session.exec(select(ChannelState)).all()
    return {r.provider: ManualSwitch(r.disabled, r.reason, r.updated_at) for r in rows}


def write_switch(engine: Engine, name: str, disabled: bool, reason: str = "") -> ManualSwitch:
    """Switch channel `name` off (`disabled=True`) or back on, for every process."""
    with Session(engine) as session:
        row = session.get(ChannelState, name) or ChannelState(provider=name)
        row.disabled, row.reason, row.updated_at = disabled, reason if disabled else "", time.time()
        session.add(row)
        session.commit()
        return ManualSwitch(row.disabled, row.reason, row.updated_at)


def describe(provider: ProviderConfig, channels: Health) -> dict[str, Any]:
    """One channel's config and state, as the admin API and the CLI show it."""
    aliases = [m for m in provider.model_map if m not in provider.models]
    return {
        "name": provider.name,
        "adapter": provider.adapter,
        "models": [*provider.models, *aliases],
        "priority": provider.priority,
        "weight": provider.weight,
        **channels.status(provider.name),
    }


def known_provider(config: Config, name: str) -> ProviderConfig | None:
    """The configured provider called `name`, if any."""
    return next((p for p in config.providers if p.name == name), None)
