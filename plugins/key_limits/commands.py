"""`tokone limits …`: set a key's spend limits and IP allow-list, an account's budget."""

from __future__ import annotations

from typing import Annotated

import typer
from tokone.core.cli.main import config_or_exit, fail, migrated_engine, plugin_config
from tokone.core.domain.errors import AccountError
from tokone.core.domain.key_ops import list_keys
from tokone.core.domain.money import parse_amount
from tokone.core.domain.spend_limits import (
    key_limit_info,
    limit_summary,
    set_account_budget,
    set_key_limits,
)

limits_app = typer.Typer(
    help="Spend limits per key, budgets per account, IP allow-lists.", no_args_is_help=True
)
NONE_WORDS = {"none", "off", ""}


def amount_or_none(value: str | None) -> int | str | None:
    """A CLI amount: "keep" when not given, None for none/off, else micro-units."""
    if value is None:
        return "keep"
    return None if value.strip().lower() in NONE_WORDS else parse_amount(value)


@limits_app.command("key")
def limits_key(
    key_id: int,
    total: Annotated[
        str | None, typer.Option(help="Total cap, e.g. 100 (`none` removes it).")
    ] = None,
    per_period: Annotated[
        str | None, typer.Option(help="Cap per period, e.g. 5 (`none` removes it).")
    ] = None,
    period: Annotated[str | None, typer.Option(help="day, week or month.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA zone whose midnight starts a period.")
    ] = None,
    ips: Annotated[
        str | None,
        typer.Option(help="Comma-separated CIDR ranges the key may be used from (`none`: any)."),
    ] = None,
) -> None:
    """Set a key's spend limits and IP allow-list (effective within a second)."""
    config = config_or_exit()
    try:
        allowed = None
        if ips is not None:
            allowed = [] if ips.strip().lower() in NONE_WORDS else ips.split(",")
        row = set_key_limits(
            migrated_engine(config),
            key_id,
            total=amount_or_none(total),
            per_period=amount_or_none(per_period),
            period=period,
            timezone=timezone,
            allowed_ips=allowed,
        )
    except AccountError as exc:
        raise fail(str(exc)) from None
    info = key_limit_info(migrated_engine(config), row, _timezone())
    typer.echo(
        f"key {key_id}: {limit_summary(info)}; IPs: {', '.join(info['allowed_ips']) or 'any'}"
    )


@limits_app.command("account")
def limits_account(
    name: str,
    budget: Annotated[str, typer.Option(help="Cap per period, e.g. 500 (`none` removes it).")],
    period: Annotated[str, typer.Option(help="day, week, month or total.")] = "month",
) -> None:
    """Give an account a budget that resets every period (on top of its balance)."""
    config = config_or_exit()
    try:
        amount = amount_or_none(budget)
        set_account_budget(
            migrated_engine(config), name, amount if isinstance(amount, int) else None, period
        )
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"account {name}: budget {budget} per {period}")


@limits_app.command("list")
def limits_list(
    account: Annotated[str | None, typer.Option(help="Only this account's keys.")] = None,
) -> None:
    """Every key with its limits and what it spent this period."""
    config = config_or_exit()
    engine = migrated_engine(config)
    try:
        rows = list_keys(engine, account)
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{'ID':>4}  {'ACCOUNT':<16} {'SPEND / LIMIT':<44} IPS")
    for key, account_name in rows:
        info = key_limit_info(engine, key, _timezone())
        ips = ",".join(info["allowed_ips"]) or "any"
        typer.echo(f"{key.id:>4}  {account_name:<16} {limit_summary(info):<44} {ips}")


def _timezone() -> str:
    settings = plugin_config("key_limits")
    return settings.timezone if settings is not None else "UTC"
