"""Property tests: pricing is exact integer arithmetic, and amounts round-trip as text."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokone.core.config import parse_config
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import MAX_UNITS, format_amount, parse_amount
from tokone.core.types import Call, Family, Principal, Usage
from tokone.plugins import token_pricing
from tokone.plugins.token_pricing import GroupTable

thorough = settings(max_examples=300, deadline=None)

# decimals as an operator writes them in tokone.toml: up to 6 places
decimals = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False)
prices = st.builds(
    lambda i, o, c: {"input": float(i), "output": float(o), "cached_input": float(c)},
    decimals,
    decimals,
    decimals,
)
multipliers = st.decimals(min_value=0, max_value=10, places=4).map(float)
tokens = st.integers(min_value=0, max_value=10_000_000)


def gateway_for(price: dict, multiplier: float, tiers: dict[str, float] | None = None):
    """A stand-in gateway: a parsed config and an in-memory group table (no database)."""
    billing = {"service_tiers": tiers} if tiers is not None else {}
    config = parse_config(
        {"prices": {"m": price}, "groups": {"g": {"multiplier": multiplier}}, "billing": billing}
    )
    return SimpleNamespace(config=config, state={"groups": GroupTable(config, None)})


def call(tier: str | None = None, override: float | None = None) -> Call:
    principal = Principal(
        key_id=1, account_id=1, account_name="a", group="g", multiplier_override=override
    )
    return Call(
        "req", Family.OPENAI, "chat.completions", "m", principal=principal, service_tier=tier
    )


def exact_cost(price: dict, usage: Usage, factor: Fraction) -> Fraction:
    """The cost computed independently, from the prices as written (decimal strings)."""
    d = lambda x: Fraction(Decimal(str(x)))  # noqa: E731
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    return factor * (
        (usage.input_tokens - cached) * d(price["input"])
        + cached * d(price["cached_input"])
        + usage.output_tokens * d(price["output"])
    )


@thorough
@given(prices, multipliers, tokens, tokens, tokens)
def test_cost_is_the_exact_amount_rounded_half_up_once(price, multiplier, i, o, c):
    usage = Usage(input_tokens=i, output_tokens=o, cached_input_tokens=c)
    charge = token_pricing.price(call(), usage, gateway_for(price, multiplier))
    assert isinstance(charge.amount, int) and charge.amount >= 0
    exact = exact_cost(price, usage, Fraction(Decimal(str(multiplier))))
    assert charge.amount - Fraction(1, 2) <= exact < charge.amount + Fraction(1, 2)
    assert charge.multiplier == multiplier


@thorough
@given(
    prices,
    multipliers,
    tokens,
    tokens,
    tokens,
    st.integers(1, 10_000),
    st.sampled_from(["input", "output", "cached"]),
)
def test_more_tokens_never_cost_less(price, multiplier, i, o, c, more, which):
    gateway = gateway_for(price, multiplier)
    before = Usage(input_tokens=i, output_tokens=o, cached_input_tokens=min(c, i))
    after = Usage(
        input_tokens=i + (more if which in ("input", "cached") else 0),
        output_tokens=o + (more if which == "output" else 0),
        cached_input_tokens=min(c, i) + (more if which == "cached" else 0),
    )
    assert (
        token_pricing.price(call(), after, gateway).amount
        >= token_pricing.price(call(), before, gateway).amount
    )


@thorough
@given(
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    multipliers,
    st.sampled_from(["flex", "default", "priority"]),
    st.sampled_from([None, "flex", "auto"]),
)
def test_upstream_tier_wins_and_factors_apply_exactly(i, o, multiplier, served, requested):
    # whole-number prices: the base cost is an integer, so the factors are visible exactly
    price = {"input": 3.0, "output": 7.0, "cached_input": 1.0}
    tiers = {"flex": 0.5, "default": 1.0, "priority": 2.0}
    gateway = gateway_for(price, multiplier, tiers)
    usage = Usage(input_tokens=i, output_tokens=o, service_tier=served)
    charge = token_pricing.price(call(tier=requested), usage, gateway)
    assert charge.tier == served and charge.tier_factor == tiers[served]
    base = 3 * i + 7 * o
    exact = base * Fraction(Decimal(str(multiplier))) * Fraction(Decimal(str(tiers[served])))
    assert charge.amount == int(exact * 2 + 1) // 2
    # no tier from upstream: the requested one is billed (unknown tiers at 1x)
    fallback = token_pricing.price(
        call(tier=requested), Usage(input_tokens=i, output_tokens=o), gateway
    )
    assert fallback.tier == (requested or "default")
    assert fallback.tier_factor == tiers.get(requested or "default", 1.0)


@thorough
@given(st.integers(0, 10**6), multipliers, multipliers)
def test_account_override_beats_the_group(o, group_multiplier, override):
    gateway = gateway_for({"input": 0.0, "output": 1.0, "cached_input": 0.0}, group_multiplier)
    usage = Usage(output_tokens=o)
    charge = token_pricing.price(call(override=override), usage, gateway)
    assert charge.multiplier == override
    assert charge.amount == int(o * Fraction(Decimal(str(override))) * 2 + 1) // 2


def test_per_request_price_and_unpriced_models():
    gateway = gateway_for({"input": 1.0, "output": 2.0, "per_request": 0.001}, 0.5)
    charge = token_pricing.price(call(), Usage(input_tokens=10, output_tokens=5), gateway)
    assert charge.amount == (10 * 1 + 5 * 2 + 1000) // 2
    unknown = Call("req", Family.OPENAI, "chat.completions", "other", principal=call().principal)
    assert token_pricing.price(unknown, Usage(input_tokens=10), gateway).amount == 0


@thorough
@given(st.integers(min_value=-(MAX_UNITS * 10**6 - 1), max_value=MAX_UNITS * 10**6 - 1))
def test_format_then_parse_is_the_identity(micro):
    text = format_amount(micro)
    assert parse_amount(text) == micro
    assert Decimal(text) * 10**6 == micro


@thorough
@given(st.decimals(min_value=-(MAX_UNITS - 1), max_value=MAX_UNITS - 1, places=6, allow_nan=False))
def test_parse_then_format_keeps_the_value(value):
    micro = parse_amount(str(value))
    assert Decimal(format_amount(micro)) == value


@thorough
@given(st.text(max_size=40))
def test_parse_refuses_anything_else_with_a_message(text):
    try:
        micro = parse_amount(text)
    except AccountError as exc:
        assert "amount" in str(exc) and repr(text) in str(exc)
        return
    assert Decimal(text.strip()) * 10**6 == micro


@pytest.mark.parametrize(
    "text",
    [
        "0.0000001",
        "1e-7",
        "sNaN",
        "NaN",
        "inf",
        "1e12",
        "1234567890.0000001",
        "1e-9999999",
        "",
        "ten",
    ],
)
def test_parse_refuses_what_it_cannot_hold_exactly(text):
    with pytest.raises(AccountError):
        parse_amount(text)
