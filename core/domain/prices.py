"""Prices as a principal pays them: exact decimals, the multiplier, the effective price list.

The one implementation of the pieces every price shown or charged shares: config numbers
read as the decimals they were written as (:func:`exact`), the multiplier of a principal
(its account's override, else its group's; 1 for an unknown group) and the table of each
configured model's prices with that multiplier applied (:func:`price_list`, served by
``GET /pricing`` and the console's price page). The `token_pricing` plugin charges with the
same :func:`exact` and :func:`multiplier`, over its cached group table.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from functools import lru_cache

import msgspec
from sqlalchemy import Engine
from tokone.core.config import Config
from tokone.core.domain.groups import list_groups
from tokone.core.types import Principal

MICRO = 1_000_000
"""Micro-units per currency unit (and tokens per price unit: prices are per million)."""


@lru_cache(maxsize=4096)
def exact(value: float) -> Fraction:
    """The decimal a config number was written as, exactly (0.15 -> 3/20)."""
    return Fraction(str(value))


def decimal_string(value: Fraction) -> str:
    """An exact decimal rendering of a fraction whose denominator has only factors 2 and 5."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    scaled = int(value * 10**places)
    if places == 0:
        return f"{sign}{scaled}"
    whole, frac = divmod(scaled, 10**places)
    return f"{sign}{whole}.{frac:0{places}d}"


def multiplier(principal: Principal | None, groups: Mapping[str, float]) -> float:
    """The account's override, else its group's multiplier in `groups` (1 if unknown)."""
    if principal is None:
        return 1.0
    if principal.multiplier_override is not None:
        return principal.multiplier_override
    return groups.get(principal.group, 1.0)


def group_multipliers(engine: Engine, config: Config) -> dict[str, float]:
    """Every group's multiplier now: `[groups]` overlaid with the `groups` table."""
    config_groups = {name: group.multiplier for name, group in config.groups.items()}
    return {name: m for name, m, _ in list_groups(engine, config_groups)}


class ModelPriceOut(msgspec.Struct):
    """One model's effective prices, as exact decimal strings (currency per million tokens)."""

    model: str
    input: str
    output: str
    cached_input: str
    per_request: str


class PricingOut(msgspec.Struct):
    """The caller's prices: base prices x `multiplier`; a tier multiplies them by its factor."""

    group: str
    multiplier: float
    unit: str
    service_tiers: dict[str, float]
    models: list[ModelPriceOut]


def price_list(config: Config, principal: Principal, factor: float) -> PricingOut:
    """Every priced model's prices for `principal`, times its multiplier `factor`."""
    times = exact(factor)
    models = []
    for name, price in sorted(config.prices.items()):
        cached = price.cached_input if price.cached_input is not None else price.input
        models.append(
            ModelPriceOut(
                model=name,
                input=decimal_string(exact(price.input) * times),
                output=decimal_string(exact(price.output) * times),
                cached_input=decimal_string(exact(cached) * times),
                per_request=decimal_string(exact(price.per_request) * times),
            )
        )
    return PricingOut(
        group=principal.group,
        multiplier=factor,
        unit=f"currency units per million tokens ({MICRO:_} micro-units per currency unit)",
        service_tiers=dict(config.billing.service_tiers),
        models=models,
    )


def pricing_for(engine: Engine, config: Config, principal: Principal) -> PricingOut:
    """`principal`'s price list, with its multiplier as the database says it is now."""
    return price_list(config, principal, multiplier(principal, group_multipliers(engine, config)))
