"""The console's forms for spend limits, IP allow-lists and alerts: parse, then call the domain.

Amounts are parsed exactly by :func:`~tokone.core.domain.money.parse_amount`, periods and
CIDR ranges checked by :mod:`tokone.core.domain.spend_limits` — the checks the CLI and the
admin API use — and all of it *before* anything is written, so a refused form leaves no key
and no half-applied change behind. The fields show only when the plugin that enforces them
(``key_limits``, ``ip_allow``, ``alerts``) is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from tokone.core.domain.alerts import set_account_alerts
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import parse_amount
from tokone.core.domain.spend_limits import (
    check_cidrs,
    check_period,
    key_limit_info,
    limit_summary,
)
from tokone.core.gateway import Gateway
from tokone.core.store.tables import ApiKey

MAX_RANGES = 256
"""At most this many CIDR ranges per key (as the admin API allows)."""


@dataclass(frozen=True, slots=True)
class Features:
    """Which of the limit and alert plugins are loaded (their fields show only then)."""

    limits: bool
    ips: bool
    alerts: bool
    alert_mail: bool
    """Whether the alerts plugin has a mail server (else e-mail alerts are not sent)."""
    timezone: str
    """`[plugins.key_limits] timezone`: where a key's day starts unless it names a zone."""

    @classmethod
    def of(cls, gateway: Gateway) -> Features:
        """What `gateway` enforces: plugins left out with `[plugins] disable` are absent."""
        settings = gateway.plugin_config("key_limits")
        alerts = gateway.plugin_config("alerts")
        return cls(
            limits=gateway.pm.has_plugin("key_limits"),
            ips=gateway.pm.has_plugin("ip_allow"),
            alerts=gateway.pm.has_plugin("alerts"),
            alert_mail=alerts is not None and alerts.smtp is not None,
            timezone=settings.timezone if settings is not None else "UTC",
        )


def optional_amount(text: str, what: str) -> int | None:
    """A form amount as micro-units ("" : None); a malformed or negative one is refused."""
    text = text.strip()
    if not text:
        return None
    try:
        micro = parse_amount(text)
    except AccountError as exc:
        raise AccountError(f"{what}: {exc}") from None
    if micro < 0:
        raise AccountError(f"{what}: cannot be negative")
    return micro


def parse_ranges(text: str) -> list[str]:
    """A CIDR list from a text area (one per line or comma separated), checked and normalised."""
    items = [item for item in re.split(r"[,\s]+", text) if item]
    if len(items) > MAX_RANGES:
        raise AccountError(f"IP allow-list: at most {MAX_RANGES} ranges")
    try:
        return check_cidrs(items)
    except AccountError as exc:
        raise AccountError(f"IP allow-list: {exc}") from None


def key_limit_changes(form: dict[str, str], features: Features) -> dict[str, Any]:
    """The `set_key_limits` arguments of a form (fields of a plugin not loaded are ignored).

    An empty amount removes that limit, an empty IP list the restriction.
    """
    changes: dict[str, Any] = {}
    if features.limits:
        changes["total"] = optional_amount(form.get("limit_total", ""), "Total spend limit")
        changes["per_period"] = optional_amount(
            form.get("limit_amount", ""), "Spend limit per period"
        )
        changes["period"] = check_period(form.get("limit_period", "day") or "day")
    if features.ips:
        changes["allowed_ips"] = parse_ranges(form.get("allowed_ips", ""))
    return changes


def wants_limits(changes: dict[str, Any]) -> bool:
    """Whether a new key's form sets any limit or IP range (else nothing is written)."""
    return bool(
        changes.get("total") is not None
        or changes.get("per_period") is not None
        or changes.get("allowed_ips")
    )


def limit_view(engine: Engine, key: ApiKey, features: Features) -> dict[str, Any]:
    """A key's limits, spend this period and reset, for the keys list and the key page."""
    info = key_limit_info(engine, key, features.timezone)
    return {**info, "summary": limit_summary(info)}


def save_alerts(engine: Engine, account_name: str, form: dict[str, str]) -> None:
    """Set the account's low-balance threshold, webhook URL and e-mail ("" : none)."""
    set_account_alerts(
        engine,
        account_name,
        threshold=optional_amount(form.get("alert_threshold", ""), "Low-balance threshold"),
        webhook=form.get("alert_webhook", "").strip(),
        email=form.get("alert_email", "").strip(),
    )
