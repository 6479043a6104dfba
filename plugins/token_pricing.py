"""Default pricing: tokens x per-million prices, times group multiplier and service-tier factor.

A price per million tokens times a token count *is* an amount in micro-units, so the
arithmetic is exact: prices and factors are read as decimals (`Fraction(str(x))`) and the
result is rounded half-up to an integer number of micro-units once, at the end.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from fractions import Fraction
from functools import lru_cache

from tokone.core.config import Config, ModelPrice
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Charge, Principal, Usage

MICRO = 1_000_000


@lru_cache(maxsize=4096)
def exact(value: float) -> Fraction:
    """The decimal a config number was written as, exactly (0.15 -> 3/20)."""
    return Fraction(str(value))


def round_half_up(value: Fraction) -> int:
    """Round a non-negative amount to whole micro-units, halves up."""
    return int((value * 2 + 1) // 2)


def model_price(config: Config, model: str) -> ModelPrice | None:
    """The price entry for `model`: exact name first, then the first matching wildcard."""
    price = config.prices.get(model)
    if price is not None:
        return price
    for pattern, candidate in config.prices.items():
        if "*" in pattern and fnmatchcase(model, pattern):
            return candidate
    return None


def multiplier_for(config: Config, principal: Principal | None) -> float:
    """The account's override, else its group's multiplier (1 for an unknown group)."""
    if principal is None:
        return 1.0
    if principal.multiplier_override is not None:
        return principal.multiplier_override
    group = config.groups.get(principal.group)
    return group.multiplier if group is not None else 1.0


def base_cost(price: ModelPrice, usage: Usage) -> Fraction:
    """Undiscounted cost in micro-units (cached input at its own price, if it has one)."""
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    cached_price = price.cached_input if price.cached_input is not None else price.input
    return (
        (usage.input_tokens - cached) * exact(price.input)
        + cached * exact(cached_price)
        + usage.output_tokens * exact(price.output)
        + exact(price.per_request) * MICRO
    )


def tier_of(call: Call, usage: Usage) -> str:
    """The tier the upstream says it served, else the one requested, else `default`."""
    return usage.service_tier or call.service_tier or "default"


@hookimpl
def price(call: Call, usage: Usage, gateway: Gateway) -> Charge:
    """Price `usage` for `call`'s model, account group and service tier."""
    config = gateway.config
    tier = tier_of(call, usage)
    tier_factor = config.billing.service_tiers.get(tier, 1.0)
    multiplier = multiplier_for(config, call.principal)
    entry = model_price(config, call.model)
    if entry is None:
        return Charge(0, multiplier, tier, tier_factor, {"unpriced": True})
    amount = base_cost(entry, usage) * exact(multiplier) * exact(tier_factor)
    return Charge(round_half_up(amount), multiplier, tier, tier_factor)
