"""Money and multipliers as exact values: decimal text in, integer micro-units out.

No amount is ever rounded: an input with more than 6 decimals is refused, and amounts stay
below :data:`MAX_UNITS` currency units so every one fits a 64-bit column.
"""

from __future__ import annotations

from decimal import MAX_EMAX, MIN_EMIN, Decimal, InvalidOperation, localcontext

from tokone.core.domain.errors import AccountError

MICRO = 1_000_000
MAX_UNITS = 10**12
"""Amounts are below a trillion currency units (10**18 micro-units, within 64 bits)."""


def parse_amount(value: str) -> int:
    """A currency amount like `10`, `-2` or `0.25` as integer micro-units.

    Exact (no rounding ever happens): at most 6 decimal places, and less than
    :data:`MAX_UNITS` in absolute value so every amount fits a 64-bit column.
    """
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, ValueError):
        raise AccountError(
            f"not an amount: {value!r} (expected a number like 10 or 0.25)"
        ) from None
    if not amount.is_finite():
        raise AccountError(f"not an amount: {value!r} (expected a finite number)")
    if abs(amount) >= MAX_UNITS:
        raise AccountError(f"amount too large: {value!r} (at most {MAX_UNITS - 1:_})")
    with localcontext() as ctx:
        # enough digits and exponent range that scaling is exact (no rounding, no underflow)
        ctx.prec = len(amount.as_tuple().digits) + 8
        ctx.Emin, ctx.Emax = MIN_EMIN, MAX_EMAX
        micro = amount.scaleb(6)
        if micro != micro.to_integral_value():
            raise AccountError(f"not an amount: {value!r} (at most 6 decimal places)")
        return int(micro)


def format_amount(micro: int) -> str:
    """Micro-units as a currency amount with 6 decimals, e.g. `9.999125`."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


def check_multiplier(value: float | str) -> float:
    """A price multiplier: a finite number >= 0 with at most 6 decimals, else AccountError."""
    try:
        exact = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise AccountError(f"not a multiplier: {value!r} (expected a number like 0.8)") from None
    if not exact.is_finite() or exact < 0 or exact > 1000:
        raise AccountError(f"not a multiplier: {value!r} (expected a number from 0 to 1000)")
    if exact != exact.quantize(Decimal("0.000001")):
        raise AccountError(f"not a multiplier: {value!r} (at most 6 decimal places)")
    return float(exact)
