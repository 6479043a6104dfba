"""`tokone alerts …`: an account's threshold and destinations, and the delivery record."""

from __future__ import annotations

from typing import Annotated

import typer
from tokone.core.cli.main import config_or_exit, fail, migrated_engine
from tokone.core.domain.alerts import KEEP, list_deliveries, set_account_alerts
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount, parse_amount

alerts_app = typer.Typer(help="Low-balance, limit and expiry alerts.", no_args_is_help=True)


@alerts_app.command("set")
def alerts_set(
    account: str,
    threshold: Annotated[
        str | None, typer.Option(help="Alert below this balance, e.g. 20 (`none`: no alert).")
    ] = None,
    webhook: Annotated[str | None, typer.Option(help="URL to POST alerts to (`` : none).")] = None,
    email: Annotated[
        str | None, typer.Option(help="Address to mail alerts to (`` : none).")
    ] = None,
) -> None:
    """Set an account's low-balance threshold and where its alerts go."""
    config = config_or_exit()
    try:
        value: int | str | None = KEEP
        if threshold is not None:
            value = None if threshold.lower() in {"none", "off", ""} else parse_amount(threshold)
        row = set_account_alerts(
            migrated_engine(config), account, threshold=value, webhook=webhook, email=email
        )
    except AccountError as exc:
        raise fail(str(exc)) from None
    shown = format_amount(row.alert_threshold) if row.alert_threshold is not None else "none"
    typer.echo(
        f"account {account}: threshold {shown}, webhook {row.alert_webhook or '-'}, "
        f"e-mail {row.alert_email or '-'}"
    )


@alerts_app.command("list")
def alerts_list(
    account: Annotated[str | None, typer.Option(help="Only this account's alerts.")] = None,
) -> None:
    """The newest alert deliveries and their status."""
    config = config_or_exit()
    try:
        rows = list_deliveries(migrated_engine(config), account)
    except AccountError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"{'ID':>5}  {'KIND':<15} {'CHANNEL':<8} {'STATUS':<10} {'TRIES':>5}  TARGET")
    for row in rows:
        typer.echo(
            f"{row['id']:>5}  {row['kind']:<15} {row['channel']:<8} {row['status']:<10} "
            f"{row['attempts']:>5}  {row['target']}"
        )
