"""The alerts plugin's hooks: note spending in `meter`, scan and send in the background."""

from __future__ import annotations

import typer
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome
from tokone.plugins.alerts.commands import alerts_app
from tokone.plugins.alerts.settings import AlertSettings
from tokone.plugins.alerts.worker import AlertWorker

NAME = "alerts"


@hookimpl
def plugin_config_schema() -> type[AlertSettings]:
    """`[plugins.alerts]`: destinations, webhook secret, SMTP, retries (README "Alerts")."""
    return AlertSettings


@hookimpl
def register_commands(app: typer.Typer) -> None:
    """`tokone alerts set|list`."""
    app.add_typer(alerts_app, name="alerts")


@hookimpl
def startup(gateway: Gateway) -> None:
    """Start the background task that finds crossings and sends alerts."""
    gateway.state[NAME] = AlertWorker(gateway, gateway.plugin_config(NAME))


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Note that the call's account and key spent (or were refused): no I/O here."""
    worker: AlertWorker | None = gateway.state.get(NAME)
    if worker is None or call.principal is None:
        return
    refusal = outcome.error if outcome.status == 402 else None
    worker.saw(call.principal.account_id, call.principal.key_id, refusal)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    """Stop the background task (queued deliveries stay in the database)."""
    worker: AlertWorker | None = gateway.state.pop(NAME, None)
    if worker is not None:
        await worker.stop()
