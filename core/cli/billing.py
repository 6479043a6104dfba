"""Billing commands: `tokone groups …`, `tokone codes …`, `tokone usage`, `tokone audit`, and
the money sub-commands of `tokone accounts` (override, adjust, refund).

Registered on the main app by :func:`register`; the shared helpers (config loading, the
migrated engine, error exits) come from `tokone.core.cli.main`, imported late since it imports
this module.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from tokone.core.domain.accounts import set_override
from tokone.core.domain.audit import AuditFilter, entry_dict, list_entries, record
from tokone.core.domain.codes import create_codes, list_codes
from tokone.core.domain.errors import AccountError
from tokone.core.domain.groups import create_group, list_groups, set_group
from tokone.core.domain.keys import KeyHasher
from tokone.core.domain.ledger_entries import add_entry
from tokone.core.domain.money import check_multiplier, format_amount, parse_amount
from tokone.core.domain.usage_report import UsageFilter, format_table, time_range, usage_report

groups_app = typer.Typer(help="Pricing groups and their multipliers.", no_args_is_help=True)
codes_app = typer.Typer(help="Redemption codes (top-ups users redeem).", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _cli() -> Any:
    """`tokone.core.cli.main`, imported late (it imports this module)."""
    from tokone.core.cli import main as cli

    return cli


def _config_groups(config: Any) -> dict[str, float]:
    return {name: group.multiplier for name, group in config.groups.items()}


@groups_app.command("list")
def groups_list(as_json: JsonOption = False) -> None:
    """Every group (from tokone.toml and the database, which wins) and its multiplier."""
    cli = _cli()
    config = cli.config_or_exit()
    rows = list_groups(cli.migrated_engine(config), _config_groups(config))
    if as_json:
        data = [{"name": n, "multiplier": m, "source": s} for n, m, s in rows]
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"{'NAME':<20} {'MULTIPLIER':>10}  SOURCE")
    for name, multiplier, source in rows:
        typer.echo(f"{name:<20} {multiplier:>10g}  {source}")


@groups_app.command("create")
def groups_create(
    name: str,
    multiplier: Annotated[str, typer.Argument(help="Price multiplier, e.g. 0.8.")] = "1",
) -> None:
    """Define a new group in the database."""
    cli = _cli()
    config = cli.config_or_exit()
    try:
        group = create_group(cli.migrated_engine(config), name, multiplier, _config_groups(config))
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    record(
        cli.migrated_engine(config),
        "cli",
        "group.create",
        f"group:{name}",
        after={"multiplier": group.multiplier},
    )
    typer.echo(f"created group {group.name} (multiplier {group.multiplier:g})")


@groups_app.command("set")
def groups_set(
    name: str, multiplier: Annotated[str, typer.Argument(help="New multiplier, e.g. 0.8.")]
) -> None:
    """Change a group's multiplier (every gateway applies it within a second)."""
    cli = _cli()
    config = cli.config_or_exit()
    engine = cli.migrated_engine(config)
    before = {n: m for n, m, _ in list_groups(engine, _config_groups(config))}.get(name)
    try:
        group = set_group(engine, name, multiplier, _config_groups(config))
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    record(
        engine,
        "cli",
        "group.set",
        f"group:{name}",
        before={"multiplier": before},
        after={"multiplier": group.multiplier},
    )
    typer.echo(f"group {group.name}: multiplier {group.multiplier:g}")


def accounts_override(
    name: str,
    multiplier: Annotated[
        str | None, typer.Argument(help="The account's own multiplier, e.g. 0.7.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Use the group's multiplier again.")] = (
        False
    ),
) -> None:
    """Give one account its own price multiplier, or `--clear` it."""
    cli = _cli()
    if (multiplier is None) == (not clear):
        raise cli.fail("give either a MULTIPLIER or --clear")
    config = cli.config_or_exit()
    try:
        value = None if clear else check_multiplier(multiplier or "")
        set_override(cli.migrated_engine(config), name, value)
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    record(
        cli.migrated_engine(config),
        "cli",
        "account.override",
        f"account:{name}",
        after={"multiplier_override": value},
    )
    typer.echo(
        f"{name}: " + ("multiplier of its group" if value is None else f"multiplier {value:g}")
    )


def _move(name: str, kind: str, amount: str, note: str, request_id: str | None = None) -> None:
    cli = _cli()
    config = cli.config_or_exit()
    try:
        micro = parse_amount(amount)
        balance = add_entry(cli.migrated_engine(config), name, kind, micro, "cli", note, request_id)
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    after = {"balance": format_amount(balance), "amount": format_amount(micro), "note": note}
    if request_id:
        after["request_id"] = request_id
    action = {"adjustment": "adjust", "refund": "refund"}[kind]
    record(cli.migrated_engine(config), "cli", f"account.{action}", f"account:{name}", after=after)
    sign = "+" if micro > 0 else ""
    typer.echo(f"{name}: {kind} {sign}{format_amount(micro)}, balance {format_amount(balance)}")


def accounts_adjust(
    name: str,
    amount: Annotated[str, typer.Argument(help="Signed amount, e.g. 2, or -1.5 after `--`.")],
    note: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
) -> None:
    """Correct a balance up or down (an `adjustment` entry): `adjust NAME -- -1.5`."""
    _move(name, "adjustment", amount, note)


def accounts_refund(
    name: str,
    amount: Annotated[str, typer.Argument(help="Amount to give back, e.g. 0.25.")],
    request: Annotated[
        str | None, typer.Option(help="The charged call's request id (refunded at most once).")
    ] = None,
    note: Annotated[str, typer.Option(help="Why (kept in the ledger).")] = "",
) -> None:
    """Give money back (a `refund` ledger entry), optionally for one charged call."""
    _move(name, "refund", amount, note, request)


@codes_app.command("create")
def codes_create(
    amount: Annotated[str, typer.Option(help="What each code is worth, e.g. 10 or 2.5.")],
    count: Annotated[int, typer.Option(help="How many codes.")] = 1,
) -> None:
    """Create codes and print them once, one per line; only their hashes are stored."""
    cli = _cli()
    config = cli.config_or_exit()
    try:
        micro = parse_amount(amount)
        codes = create_codes(
            cli.migrated_engine(config), KeyHasher(config.server.secret), micro, count, "cli"
        )
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    record(
        cli.migrated_engine(config),
        "cli",
        "codes.create",
        "codes",
        after={"count": count, "amount": format_amount(micro)},
    )
    typer.echo(
        f"created {count} code(s) worth {format_amount(micro)} each; store them now, "
        "they are not shown again:",
        err=True,
    )
    for code in codes:
        typer.echo(code)


@codes_app.command("list")
def codes_list(
    unused: Annotated[bool, typer.Option("--unused", help="Only codes not yet redeemed.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Codes (visible prefix, amount, who redeemed them when) — never the codes themselves."""
    cli = _cli()
    config = cli.config_or_exit()
    rows = list_codes(cli.migrated_engine(config), unused_only=unused)
    if as_json:
        data = [
            {
                "id": c.id,
                "prefix": c.prefix,
                "amount": format_amount(c.amount),
                "amount_micro": c.amount,
                "created_at": c.created_at,
                "redeemed_at": c.redeemed_at,
                "redeemed_by": c.redeemed_by,
            }
            for c in rows
        ]
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(f"{'ID':>5}  {'PREFIX':<12} {'AMOUNT':>16}  {'REDEEMED':<17} BY")
    for c in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(c.redeemed_at)) if c.redeemed_at else "-"
        typer.echo(
            f"{c.id:>5}  {c.prefix:<12} {format_amount(c.amount):>16}  {when:<17} "
            f"{c.redeemed_by or ''}"
        )


def usage(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    key: Annotated[int | None, typer.Option(help="Only this key id.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this ISO 8601 date or time (UTC unless stated).")
    ] = None,
    days: Annotated[float | None, typer.Option(help="The last N days (instead of --since).")] = (
        None
    ),
    until: Annotated[str | None, typer.Option(help="Up to this ISO 8601 date or time.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Usage per account, key and model, with totals."""
    cli = _cli()
    config = cli.config_or_exit()
    try:
        start, end = time_range(since, until, days)
        report = usage_report(
            cli.migrated_engine(config), UsageFilter(account, key, model, start, end)
        )
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_table(report))


def audit(
    actor: Annotated[str, typer.Option(help="Only this actor (an e-mail, admin-api, cli).")] = "",
    action: Annotated[
        str, typer.Option(help="Only this action, or a family ending in '.' (account.).")
    ] = "",
    target: Annotated[str, typer.Option(help="Only this target, e.g. account:alice.")] = "",
    since: Annotated[str | None, typer.Option(help="From this ISO 8601 date or time.")] = None,
    days: Annotated[float | None, typer.Option(help="The last N days.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    as_json: JsonOption = False,
) -> None:
    """The audit log: who changed what, when, from where, before and after; newest first."""
    cli = _cli()
    config = cli.config_or_exit()
    try:
        start, end = time_range(since, None, days)
    except AccountError as exc:
        raise cli.fail(str(exc)) from None
    wanted = AuditFilter(actor, action, target, start, end)
    rows = [entry_dict(e) for e in list_entries(cli.migrated_engine(config), wanted, limit)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'TIME (UTC)':<19}  {'ACTOR':<24} {'IP':<15} {'ACTION':<18} {'TARGET':<24} CHANGE")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["created_at"]))
        change = f"{json.dumps(r['before'])} -> {json.dumps(r['after'])}"
        typer.echo(
            f"{when:<19}  {r['actor'][:24]:<24} {r['ip'][:15]:<15} {r['action'][:18]:<18} "
            f"{r['target'][:24]:<24} {change}"
        )


def register(app: typer.Typer, accounts_app: typer.Typer) -> None:
    """Attach the billing commands to the main app and to `tokone accounts`."""
    app.add_typer(groups_app, name="groups")
    app.command("audit")(audit)
    app.add_typer(codes_app, name="codes")
    app.command("usage")(usage)
    accounts_app.command("override")(accounts_override)
    accounts_app.command("adjust")(accounts_adjust)
    accounts_app.command("refund")(accounts_refund)
