"""A second pricing policy for the tests: a minimum charge per call, wrapping the default.

Loaded with ``[plugins] modules = ["plugins.min_charge"]`` (the tests put ``tests/`` on the
gateway's PYTHONPATH). It shows that a plugin can change what a call costs without touching
the default policy: whatever `token_pricing` computes, a call is charged at least
:data:`MIN_CHARGE` micro-units — and that amount is what the ledger captures and the usage
record shows.
"""

from __future__ import annotations

from collections.abc import Generator

from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Charge, Usage

MIN_CHARGE = 5_000
"""Micro-units (0.005 currency units)."""


@hookimpl(wrapper=True)
def price(call: Call, usage: Usage, gateway: Gateway) -> Generator[None, Charge | None, Charge]:
    """Raise the default policy's amount to at least MIN_CHARGE."""
    charge = yield
    if charge is None:
        return Charge(MIN_CHARGE, detail={"min_charge": True})
    if charge.amount < MIN_CHARGE:
        charge.amount = MIN_CHARGE
        charge.detail["min_charge"] = True
    return charge
