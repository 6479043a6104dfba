"""A second pricing policy for the tests: a minimum charge per call, wrapping the default.

Loaded with ``[plugins] modules = ["min_charge"]`` (the tests put ``tests/plugins`` on the
gateway's PYTHONPATH). It shows that a plugin can change what a call costs without touching
the default policy: whatever `token_pricing` computes, a call is charged at least the
minimum — and that amount is what the ledger captures and the usage record shows.

It is also the example of a third-party plugin with its own settings and its own command::

    [plugins.min_charge]
    amount = "0.001"        # currency units; default 0.005 (MIN_CHARGE micro-units)

    $ tokone min-charge     # prints the minimum this config sets
"""

from __future__ import annotations

from collections.abc import Generator

import msgspec
import typer
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount, parse_amount
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Charge, Usage

NAME = "min_charge"
"""The name this plugin is registered under (its module's name), and so its table's."""
MIN_CHARGE = 5_000
"""Micro-units (0.005 currency units): the minimum when `[plugins.min_charge]` sets none."""


class MinChargeConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[plugins.min_charge]`: the least a call costs."""

    amount: str = format_amount(MIN_CHARGE)
    """Currency units, as a string like the CLI takes (`"0.001"`), so no float rounding."""

    def __post_init__(self) -> None:
        """Refuse an amount that is not a non-negative number (msgspec reports the table)."""
        try:
            micro = parse_amount(self.amount)
        except AccountError as exc:
            raise ValueError(f"amount: {exc}") from None
        if micro < 0:
            raise ValueError(f"amount: expected >= 0, got {self.amount!r}")

    @property
    def micro(self) -> int:
        """The minimum in micro-units."""
        return parse_amount(self.amount)


@hookimpl
def plugin_config_schema() -> type[MinChargeConfig]:
    """The settings `[plugins.min_charge]` takes."""
    return MinChargeConfig


@hookimpl(wrapper=True)
def price(call: Call, usage: Usage, gateway: Gateway) -> Generator[None, Charge | None, Charge]:
    """Raise the default policy's amount to at least the configured minimum."""
    charge = yield
    settings: MinChargeConfig = gateway.plugin_config(NAME)
    minimum = settings.micro
    if charge is None:
        return Charge(minimum, detail={"min_charge": True})
    if charge.amount < minimum:
        charge.amount = minimum
        charge.detail["min_charge"] = True
    return charge


@hookimpl
def register_commands(app: typer.Typer) -> None:
    """`tokone min-charge`: show the minimum charge the config sets."""

    @app.command("min-charge")
    def show_min_charge() -> None:
        """Show the minimum charge per call ([plugins.min_charge] amount)."""
        from tokone.core.cli.main import plugin_config

        settings: MinChargeConfig = plugin_config(NAME)
        typer.echo(f"minimum charge per call: {settings.amount} ({settings.micro} micro-units)")
