"""Default pricing: tokens x per-million prices, times group multiplier and service-tier factor.

A price per million tokens times a token count *is* an amount in micro-units, so the
arithmetic is exact: prices and factors are read as decimals (`Fraction(str(x))`), brought to
one integer denominator once per price entry, and the cost is computed in plain integers and
rounded half-up to whole micro-units once, at the end (the same number `Fraction` arithmetic
gives, at a fraction of its cost on the hot path)::

    cost = round_half_up(
        ((input - cached) * input_price + cached * cached_price + output * output_price
         + per_request * 1_000_000) * multiplier * tier_factor)

* **multiplier**: the account's ``multiplier_override`` if it has one, else its group's
  multiplier. Groups come from ``[groups.NAME]`` in ``tokone.toml`` *and* the ``groups``
  table (the database wins on a name clash, so an operator can re-price a group at run
  time); an unknown group costs 1x. The table is read into memory at most once a second per
  process by a background task (:class:`GroupTable`), never once per request.
* **tier**: the service tier the upstream says it served (``usage.service_tier``), else the
  one the client requested, else ``default``; its factor comes from ``[billing] service_tiers``
  (1 for a tier not listed there).

Another policy can wrap this one (``@hookimpl(wrapper=True) def price(...)``) to adjust the
amount; `tests/plugins/min_charge.py` is such a wrapper.
"""

from __future__ import annotations

import asyncio
import time
from functools import lru_cache
from math import lcm

import structlog
from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.config import (
    DEFAULT_REFRESH_SECONDS,
    Config,
    ModelPrice,
    RefreshSettings,
    refresh_seconds,
)
from tokone.core.domain.prices import MICRO, exact, multiplier
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.model_names import model_matches
from tokone.core.store.tables import Group
from tokone.core.types import Call, Charge, Principal, Usage


@lru_cache(maxsize=4096)
def scaled_prices(
    input_price: float, cached_price: float, output_price: float, per_request: float
) -> tuple[int, int, int, int, int]:
    """The prices as integers over one common denominator: (input, cached, output,
    per-request in micro-units, denominator)."""
    parts = (
        exact(input_price),
        exact(cached_price),
        exact(output_price),
        exact(per_request) * MICRO,
    )
    denominator = lcm(*(part.denominator for part in parts))
    in_p, cached_p, out_p, request_p = (int(part * denominator) for part in parts)
    return in_p, cached_p, out_p, request_p, denominator


def model_price(config: Config, model: str) -> ModelPrice | None:
    """The price entry for `model`: exact name first, then the first matching wildcard."""
    price = config.prices.get(model)
    if price is not None:
        return price
    for pattern, candidate in config.prices.items():
        if "*" in pattern and model_matches(model, pattern):
            return candidate
    return None


class GroupTable:
    """Group multipliers: `[groups]` from the config overlaid with the `groups` table.

    Lookups never touch the database: in the server a background task re-reads the table
    every `refresh_seconds` (`[plugins.token_pricing] refresh_seconds`, default 1; so a
    change takes effect within about that on every process); without that task (the CLI,
    tests) a lookup re-reads it inline, at most that often. The database copy wins over the
    config on a name clash.
    """

    def __init__(
        self,
        config: Config,
        engine: Engine | None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self._config = {name: group.multiplier for name, group in config.groups.items()}
        self._engine = engine
        self._refresh_seconds = refresh_seconds
        self._merged = dict(self._config)
        self._expires = 0.0
        self._task: asyncio.Task[None] | None = None

    def load(self) -> dict[str, float]:
        """Read the groups table now and return the merged multipliers."""
        merged = dict(self._config)
        if self._engine is not None:
            with Session(self._engine) as session:
                merged.update({g.name: g.multiplier for g in session.exec(select(Group)).all()})
        self._merged = merged
        self._expires = time.monotonic() + self._refresh_seconds
        return merged

    def all(self) -> dict[str, float]:
        """Every known group and its multiplier."""
        if self._task is None and self._engine is not None and time.monotonic() >= self._expires:
            self.load()
        return self._merged

    def start(self) -> None:
        """Read the table now, then keep re-reading it in the background."""
        self.load()
        self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    def stop(self) -> None:
        """Stop the background refresh."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await asyncio.to_thread(self.load)
            except Exception as exc:  # the database is unreachable: keep the last good copy
                structlog.get_logger("tokone").warning("groups_refresh_failed", error=repr(exc))


def group_table(gateway: Gateway) -> GroupTable:
    """This gateway's group table (created, and read once, on first use)."""
    table = gateway.state.get("groups")
    if table is None:
        seconds = refresh_seconds(gateway.plugin_config("token_pricing"))
        table = GroupTable(gateway.config, gateway.engine, seconds)
        gateway.state["groups"] = table
    return table


@hookimpl
def groups_changed(gateway: Gateway) -> None:
    """Re-read the groups table now: a change made in this process applies at once."""
    group_table(gateway).load()


def multiplier_for(gateway: Gateway, principal: Principal | None) -> float:
    """The account's override, else its group's multiplier (1 for an unknown group)."""
    return multiplier(principal, group_table(gateway).all()) if principal else 1.0


def base_cost(price: ModelPrice, usage: Usage) -> tuple[int, int]:
    """Undiscounted cost in micro-units as (numerator, denominator); cached input at its own
    price, if it has one."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = price.cached_input if price.cached_input is not None else price.input
    in_p, cached_p, out_p, request_p, denominator = scaled_prices(
        price.input, cached_price, price.output, price.per_request
    )
    numerator = (
        (usage.input_tokens - cached) * in_p
        + cached * cached_p
        + usage.output_tokens * out_p
        + request_p
    )
    return numerator, denominator


def tier_of(call: Call, usage: Usage) -> str:
    """The tier the upstream says it served, else the one requested, else `default`."""
    return usage.service_tier or call.service_tier or "default"


def compute(price: ModelPrice, usage: Usage, multiplier: float, tier_factor: float) -> int:
    """The exact cost in micro-units: base cost x multiplier x tier factor, rounded once."""
    numerator, denominator = base_cost(price, usage)
    m, t = exact(multiplier), exact(tier_factor)
    numerator *= m.numerator * t.numerator
    denominator *= m.denominator * t.denominator
    return (2 * numerator + denominator) // (2 * denominator)


@hookimpl
def price(call: Call, usage: Usage, gateway: Gateway) -> Charge:
    """Price `usage` for `call`'s model, account group and service tier."""
    config = gateway.config
    tier = tier_of(call, usage)
    tier_factor = config.billing.service_tiers.get(tier, 1.0)
    multiplier = multiplier_for(gateway, call.principal)
    entry = model_price(config, call.model)
    if entry is None:
        return Charge(0, multiplier, tier, tier_factor, {"unpriced": True})
    return Charge(compute(entry, usage, multiplier, tier_factor), multiplier, tier, tier_factor)


@hookimpl
def plugin_config_schema() -> type[RefreshSettings]:
    """`[plugins.token_pricing] refresh_seconds`: how often the groups table is re-read."""
    return RefreshSettings


@hookimpl
def startup(gateway: Gateway) -> None:
    """Read the groups table before the first request and keep it fresh."""
    group_table(gateway).start()


@hookimpl
def shutdown(gateway: Gateway) -> None:
    """Stop refreshing the groups table."""
    group_table(gateway).stop()
