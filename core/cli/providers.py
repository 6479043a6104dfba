"""`tokone providers status|disable|enable`: the provider channels and their manual switch.

A switch is refused when the config loads no plugin that keeps channel health (the `health`
plugin disabled): no process would obey it (see :mod:`tokone.core.health`).
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from tokone.core.config import Config, ConfigError
from tokone.core.domain import audit
from tokone.core.health import (
    SWITCHES_NOT_OBEYED,
    describe,
    known_provider,
    offline_status,
    read_switches,
    write_switch,
)

providers_app = typer.Typer(
    help="Provider channels: status, and the manual switch every gateway process obeys.",
    no_args_is_help=True,
)


def _base() -> Any:
    """`tokone.core.cli.main`, imported late (it imports this module)."""
    from tokone.core.cli import main as cli

    return cli


def format_state(row: dict[str, Any]) -> str:
    """A channel's state in words: healthy, cooldown until HH:MM:SS, disabled (by hand)…"""
    state = row["state"]
    if state == "disabled":
        reason = row.get("disabled_reason")
        return f"disabled (by hand: {reason})" if reason else "disabled (by hand)"
    if state == "cooldown" and row.get("cooldown_until"):
        return "cooldown until " + time.strftime("%H:%M:%S", time.localtime(row["cooldown_until"]))
    if state == "half_open":
        return "half-open (probing)"
    return str(state)


def offline_rows(config: Config) -> list[dict[str, Any]]:
    """Channel rows from the config and the database's manual switches (no live health)."""
    switches = read_switches(_base().migrated_engine(config))
    return [describe(p, offline_status(p, switches.get(p.name))) for p in config.providers]


def live_rows(url: str, admin_key: str) -> list[dict[str, Any]]:
    """Channel rows from a running gateway's `GET /admin/providers` (that process's health)."""
    import httpx  # only here: importing it costs every other command ~50 ms

    response = httpx.get(
        url.rstrip("/") + "/admin/providers",
        headers={"authorization": f"Bearer {admin_key}"},
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json()["data"])


@providers_app.command("status")
def providers_status(
    live: Annotated[
        str | None,
        typer.Option(help="Ask a running gateway (e.g. http://127.0.0.1:8000) for live health."),
    ] = None,
    admin_key: Annotated[
        str | None, typer.Option(help="Admin key for --live (default: the first in the config).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Channels: adapter, models, priority, weight, state and recent failures.

    Without --live this shows the config and the manual switches stored in the database
    (enabled / disabled by hand / disabled in config). Circuit-breaker state (cooldown,
    half-open) and failure counts live in each server process: pass --live URL, or call
    GET /admin/providers on the server.
    """
    cli = _base()
    config = cli.config_or_exit()
    if live:
        import httpx

        key = admin_key or next((k for k in config.server.admin_keys if k), "")
        try:
            rows = live_rows(live, key)
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise cli.fail(f"cannot read {live}/admin/providers: {exc}") from None
    else:
        rows = offline_rows(config)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(
        f"{'NAME':<16} {'ADAPTER':<10} {'PRIO':>4} {'WEIGHT':>6}  {'STATE':<34} "
        f"{'FAILURES':>8}  MODELS"
    )
    for row in rows:
        failures = row.get("recent_failures")
        typer.echo(
            f"{row['name']:<16} {row['adapter']:<10} {row['priority']:>4} {row['weight']:>6}  "
            f"{format_state(row):<34} {'-' if failures is None else failures:>8}  "
            f"{', '.join(row['models'])}"
        )
    if not live:
        typer.echo(
            "(live health — cooldowns, failures — is per server process: use --live URL "
            "or GET /admin/providers)",
            err=True,
        )


def _switch(name: str, disabled: bool, reason: str) -> None:
    cli = _base()
    config = cli.config_or_exit()
    if known_provider(config, name) is None:
        names = ", ".join(p.name for p in config.providers) or "none"
        raise cli.fail(f"no provider named {name!r} in {config.path} (providers: {names})")
    try:
        _config, pm, _loaded = cli.loaded_plugins()
    except ConfigError as exc:
        raise cli.fail(str(exc)) from None
    if not pm.hook.channel_health.get_hookimpls():
        raise cli.fail(SWITCHES_NOT_OBEYED)
    write_switch(cli.migrated_engine(config), name, disabled, reason)
    action = "channel.disable" if disabled else "channel.enable"
    after = {"disabled": disabled, **({"reason": reason} if disabled else {})}
    audit.record(cli.migrated_engine(config), "cli", action, f"channel:{name}", after=after)
    what = f"disabled ({reason})" if disabled and reason else "disabled" if disabled else "enabled"
    typer.echo(f"provider {name} {what}; running gateways apply it within a second")


@providers_app.command("disable")
def providers_disable(
    name: str,
    reason: Annotated[str, typer.Option(help="Why (shown in status).")] = "",
) -> None:
    """Switch a channel off by hand, for every gateway process sharing the database."""
    _switch(name, True, reason)


@providers_app.command("enable")
def providers_enable(name: str) -> None:
    """Switch a channel back on (its circuit breaker still decides whether it is healthy)."""
    _switch(name, False, "")
