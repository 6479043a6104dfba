"""Channel health: the contract the failover loop and the router ask, and the manual switches.

architecture: channel health has one owner, the plugin that answers the `channel_health`
hook (the built-in `health` plugin, :mod:`tokone.plugins.health`: circuit breakers,
retry-after deferral, the operators' manual switches and their refresh from the database).
The core only *asks* it, through :class:`ChannelHealth`: the failover loop (``acquire``,
``succeeded``, ``failed``, ``release``) and the router (``usable``, ``deferred_for``,
``usable_in``). With no such plugin loaded (``[plugins] disable = ["health"]``) the answer is
:class:`NoChannelHealth`: every enabled channel is always offered and tried in the router's
order (failover within ``[routing] max_attempts`` still happens), nothing cools down, and
manual switches are not obeyed — so ``tokone providers disable`` and
``POST /admin/providers/{name}/disable`` refuse instead of writing a switch nobody reads.

What lives here besides: the manual switches' storage (the ``channel_states`` table, shared
by every process and written by the CLI and the admin API) and the channel description both
of them show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.config import Config, ProviderConfig
from tokone.core.store.tables import ChannelState

if TYPE_CHECKING:
    from tokone.core.gateway import Gateway

SWITCHES_NOT_OBEYED = (
    "no loaded plugin keeps channel health (the `health` plugin is disabled), so manual "
    "channel switches are not obeyed; enable it to use them"
)
"""Why a manual switch is refused when no plugin answers `channel_health`."""


@dataclass(slots=True)
class ManualSwitch:
    """An operator's switch for a channel, as stored in `channel_states`."""

    disabled: bool
    reason: str
    updated_at: float


class ChannelHealth(Protocol):
    """What the core asks about channels; implemented by the `channel_health` plugin.

    Names are `[[providers]]` names; `now` is `time.monotonic()`.
    """

    obeys_switches: bool
    """Whether the manual switches (`channel_states`) are applied by this implementation."""

    def usable(self, name: str, now: float) -> bool:
        """Whether the router may offer the channel now."""
        ...

    def deferred_for(self, name: str, now: float) -> float:
        """Seconds the channel should still go last (its upstream said retry-after); 0 if none."""
        ...

    def usable_in(self, names: list[str], now: float) -> float | None:
        """Seconds until the first of `names` may be tried again; None if all are switched off."""
        ...

    def acquire(self, provider: ProviderConfig) -> bool:
        """Claim an attempt on the channel right before sending; False to skip it."""
        ...

    def release(self, name: str) -> None:
        """Give back an attempt that ended without a verdict (cancelled)."""
        ...

    def succeeded(self, name: str) -> None:
        """The channel answered."""
        ...

    def failed(self, name: str, message: str, retry_after: float | None = None) -> None:
        """The channel failed (connect error, timeout, 429, 5xx, broken stream)."""
        ...

    def set_switch(self, name: str, switch: ManualSwitch) -> None:
        """Apply a manual switch this process just wrote to the database."""
        ...

    def status(self, name: str) -> dict[str, Any]:
        """The channel's state for status pages (see :func:`describe` for the keys)."""
        ...


class NoChannelHealth:
    """Channel health when no plugin keeps it: every channel usable, no state, no switches."""

    obeys_switches = False

    def __init__(self, providers: list[ProviderConfig]) -> None:
        self.providers = {p.name: p for p in providers}

    def usable(self, name: str, now: float) -> bool:
        """Always: nothing is tracked."""
        return True

    def deferred_for(self, name: str, now: float) -> float:
        """Never deferred."""
        return 0.0

    def usable_in(self, names: list[str], now: float) -> float | None:
        """Every channel may be tried now."""
        return 0.0

    def acquire(self, provider: ProviderConfig) -> bool:
        """Every attempt is allowed."""
        return True

    def release(self, name: str) -> None:
        """Nothing to give back."""

    def succeeded(self, name: str) -> None:
        """Not recorded."""

    def failed(self, name: str, message: str, retry_after: float | None = None) -> None:
        """Not recorded."""

    def set_switch(self, name: str, switch: ManualSwitch) -> None:
        """Refused: nothing would obey it."""
        raise RuntimeError(SWITCHES_NOT_OBEYED)

    def status(self, name: str) -> dict[str, Any]:
        """`unmonitored` (or `disabled (config)`), with no breaker or failure data."""
        provider = self.providers.get(name)
        return {
            **UNKNOWN_LIVE_STATUS,
            "state": configured_state(provider, None) or "unmonitored",
        }


UNKNOWN_LIVE_STATUS: dict[str, Any] = {
    "state": None,
    "breaker": None,
    "cooldown_until": None,
    "retry_after_until": None,
    "consecutive_failures": None,
    "recent_failures": None,
    "last_error": None,
    "disabled_reason": None,
}
"""The status keys every :meth:`ChannelHealth.status` returns, with nothing known."""


def health(gateway: Gateway) -> ChannelHealth:
    """This gateway's channel health: the `channel_health` plugin's, else NoChannelHealth.

    Asked once per gateway and kept (the hook is not called per request).
    """
    found: ChannelHealth | None = gateway.state.get("channel_health")
    if found is None:
        found = gateway.hook.channel_health(gateway=gateway) or NoChannelHealth(
            gateway.config.providers
        )
        gateway.state["channel_health"] = found
    return found


def configured_state(provider: ProviderConfig | None, switch: ManualSwitch | None) -> str | None:
    """`disabled (config)`, `disabled` (by an operator's switch), or None (neither)."""
    if provider is not None and not provider.enabled:
        return "disabled (config)"
    if switch is not None and switch.disabled:
        return "disabled"
    return None


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


def offline_status(provider: ProviderConfig, switch: ManualSwitch | None) -> dict[str, Any]:
    """A channel's state from the config and its stored switch alone (no live health)."""
    state = configured_state(provider, switch)
    return {
        **UNKNOWN_LIVE_STATUS,
        "state": state or "enabled",
        "disabled_reason": switch.reason if state == "disabled" and switch else None,
    }


def describe(provider: ProviderConfig, status: dict[str, Any]) -> dict[str, Any]:
    """One channel's config and `status`, as the admin API and the CLI show it.

    `status` has the keys of :meth:`ChannelHealth.status`: state (healthy, cooldown,
    half_open, disabled, disabled (config), unmonitored, or enabled when read offline),
    breaker, cooldown_until, retry_after_until (wall-clock), consecutive_failures,
    recent_failures, last_error, disabled_reason.
    """
    aliases = [m for m in provider.model_map if m not in provider.models]
    return {
        "name": provider.name,
        "adapter": provider.adapter,
        "models": [*provider.models, *aliases],
        "priority": provider.priority,
        "weight": provider.weight,
        **status,
    }


def known_provider(config: Config, name: str) -> ProviderConfig | None:
    """The configured provider called `name`, if any."""
    return next((p for p in config.providers if p.name == name), None)
