"""The plugin's hooks: hold under the key's limits and the account's budget, settle, stop."""

from __future__ import annotations

import time
from collections.abc import Awaitable

import typer
from tokone.core.domain.money import format_amount, parse_amount
from tokone.core.domain.spend_limits import PERIOD_WORDS, current_period
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome, Principal
from tokone.plugins.key_limits.commands import limits_app
from tokone.plugins.key_limits.leases import Limit, SpendLeases
from tokone.plugins.key_limits.settings import KeyLimitsSettings
from tokone.plugins.ledger.cost import worst_case_cost

NAME = "key_limits"
EXTRA = "key_limits"
"""`call.extra` key: (the limits held, the amount held under each)."""


@hookimpl
def plugin_config_schema() -> type[KeyLimitsSettings]:
    """`[plugins.key_limits]`: ``timezone`` and per-group default limits."""
    return KeyLimitsSettings


@hookimpl
def register_commands(app: typer.Typer) -> None:
    """`tokone limits key|account|show`: set and read spend limits and budgets."""
    app.add_typer(limits_app, name="limits")


def limits_for(principal: Principal, settings: KeyLimitsSettings, now: float) -> list[Limit]:
    """The limits a call of `principal` must fit: the key's (or its group's) and the account's."""
    group = settings.groups.get(principal.group)
    total = principal.spend_limit
    per_period, kind = principal.period_limit, principal.limit_period
    if group is not None:
        if total is None and group.total is not None:
            total = parse_amount(group.total)
        if per_period is None and group.per_period is not None:
            per_period, kind = parse_amount(group.per_period), group.period
    zone = principal.limit_timezone or settings.timezone
    out = []
    key_scope = f"key:{principal.key_id}"
    if per_period is not None:
        period = current_period(kind or "day", zone, now)
        out.append(
            Limit(
                key_scope,
                period.label,
                per_period,
                f"This API key's {PERIOD_WORDS[period.kind]} spend limit "
                f"({format_amount(per_period)}) is reached — the key's limit, not the account's "
                f"balance. It resets at {period.reset_text()}.",
            )
        )
    if total is not None:
        out.append(
            Limit(
                key_scope,
                "total",
                total,
                f"This API key's total spend limit ({format_amount(total)}) is reached — the "
                "key's limit, not the account's balance. It does not reset; ask the account's "
                "owner to raise it.",
            )
        )
    if principal.account_budget is not None:
        # One account, one clock: its budget's periods follow the configured zone.
        period = current_period(principal.account_budget_period or "month", settings.timezone, now)
        out.append(
            Limit(
                f"account:{principal.account_id}",
                period.label,
                principal.account_budget,
                f"The account's {PERIOD_WORDS[period.kind]} budget "
                f"({format_amount(principal.account_budget)}) is reached — a budget the "
                f"operator set, not the balance. It resets at {period.reset_text()}.",
            )
        )
    return out


def spend_leases(gateway: Gateway) -> SpendLeases:
    """This gateway's spend leases (created on first use, on the event loop)."""
    found = gateway.state.get(NAME)
    if found is None:
        found = gateway.state[NAME] = SpendLeases(gateway)
    return found


@hookimpl(trylast=True)
def admit(call: Call, gateway: Gateway) -> Awaitable[None] | None:
    """Hold the call's worst-case cost under every limit that applies; 402 when one is full.

    trylast, and registered before the ledger (pluggy runs the earlier of two trylast ones
    first): after every cheaper check (IP, model, rate limits), before the balance hold, so
    a key at its limit never holds any of the balance. In the steady state the hold comes
    from memory.
    """
    principal = call.principal
    if principal is None:
        return None
    limits = limits_for(principal, gateway.plugin_config(NAME), time.time())
    if not limits:
        return None
    amount = worst_case_cost(call, gateway)
    if amount <= 0:
        return None
    leases = spend_leases(gateway)
    if all(leases.budget(lim.scope, lim.period).available >= amount for lim in limits) and all(
        leases.budget(lim.scope, lim.period).growing is None for lim in limits
    ):
        for lim in limits:
            leases.budget(lim.scope, lim.period).in_flight += amount
        call.extra[EXTRA] = ([(lim.scope, lim.period) for lim in limits], amount)
        return None
    return _take(call, leases, limits, amount)


async def _take(call: Call, leases: SpendLeases, limits: list[Limit], amount: int) -> None:
    taken = await leases.take(limits, amount)
    call.extra[EXTRA] = (taken, amount)


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Give the hold back and count the call's cost against each limit it was held under."""
    held = call.extra.pop(EXTRA, None)
    if held is None:
        return
    taken, amount = held
    cost = outcome.charge.amount if outcome.charge else 0
    spend_leases(gateway).give_back(taken, amount, max(cost, 0))


@hookimpl
def startup(gateway: Gateway) -> None:
    """Start the worker: it sweeps the leases a killed process left behind from the start."""
    spend_leases(gateway)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    """Write the queued spend and give this process's leases back."""
    found = gateway.state.pop(NAME, None)
    if found is not None:
        await found.stop()
