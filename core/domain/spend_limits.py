"""Spend limits per key and budgets per account: periods, settings, and what was spent.

Shared by the CLI (``tokone limits …``), the admin API and the console; the `key_limits`
plugin enforces them. A period is ``total`` (never resets) or ``day`` / ``week`` (starting
Monday) / ``month``, each starting at midnight of an IANA time zone (UTC by default). The
spend of a period lives in ``spend_counters`` under a *scope* (``key:<id>``, ``account:<id>``)
and a *period label* (``day:2026-12-02@UTC``), so a new period starts from zero by itself.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, text
from sqlmodel import Session
from tokone.core.domain.accounts import get_account
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount
from tokone.core.store.tables import ApiKey

PERIODS = ("day", "week", "month")
"""The periods a limit can reset on."""
PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "total": "total"}


@dataclass(frozen=True, slots=True)
class Period:
    """One limit period: its label in ``spend_counters``, its start and its reset (Unix s)."""

    kind: str
    label: str
    start: float
    resets_at: float | None
    """None for ``total``, which never resets."""

    def reset_text(self) -> str:
        """When the period resets, for messages: ISO 8601 with its UTC offset, or 'never'."""
        if self.resets_at is None:
            return "never (it is a total limit)"
        zone = self.label.rsplit("@", 1)[-1]
        return datetime.fromtimestamp(self.resets_at, ZoneInfo(zone)).isoformat()


def check_timezone(name: str) -> str:
    """`name` if it is a known IANA time zone, else AccountError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise AccountError(f"unknown time zone {name!r} (e.g. UTC, Europe/Berlin)") from None
    return name


def check_period(kind: str, *, total: bool = False) -> str:
    """`kind` if it is a period name (``total`` too when `total`), else AccountError."""
    allowed = (*PERIODS, "total") if total else PERIODS
    if kind not in allowed:
        raise AccountError(f"unknown period {kind!r} (one of {', '.join(allowed)})")
    return kind


def check_cidrs(ranges: list[str]) -> list[str]:
    """The CIDR ranges normalised (``10.1.2.3/8`` → ``10.0.0.0/8``), or AccountError."""
    out = []
    for item in ranges:
        try:
            out.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise AccountError(
                f"not an IP range: {item!r} (e.g. 10.0.0.0/8, 2001:db8::/32)"
            ) from None
    return out


def current_period(kind: str, timezone: str, now: float) -> Period:
    """The period of kind `kind` (``total``, ``day``, ``week``, ``month``) containing `now`."""
    if kind == "total":
        return Period("total", "total", 0.0, None)
    zone = ZoneInfo(timezone)
    local = datetime.fromtimestamp(now, zone)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if kind == "day":
        start, end = day, day + timedelta(days=1)
    elif kind == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    # Wall-clock midnights, placed in the zone (DST-aware) only at the end.
    begins = start.replace(tzinfo=zone).timestamp()
    resets = end.replace(tzinfo=zone).timestamp()
    return Period(kind, f"{kind}:{start.date().isoformat()}@{timezone}", begins, resets)


def set_key_limits(
    engine: Engine,
    key_id: int,
    *,
    total: int | str | None = "keep",
    per_period: int | str | None = "keep",
    period: str | None = None,
    timezone: str | None = None,
    allowed_ips: list[str] | None = None,
) -> ApiKey:
    """Change a key's spend limits and IP allow-list; "keep" (the default) leaves one as is.

    `total` / `per_period` are micro-units (None removes the limit); `allowed_ips` a CIDR
    list ([] removes the restriction). Takes effect within the key cache's refresh interval.
    """
    with Session(engine) as session:
        row = session.get(ApiKey, key_id)
        if row is None:
            raise AccountError(f"no key with id {key_id} (see `tokone keys list`)", 404)
        for value in (total, per_period):
            if isinstance(value, int) and value < 0:
                raise AccountError("a spend limit cannot be negative")
        if total != "keep":
            row.spend_limit = total if isinstance(total, int) else None
        if per_period != "keep":
            row.period_limit = per_period if isinstance(per_period, int) else None
        if period is not None:
            row.limit_period = check_period(period)
        if row.period_limit is not None and row.limit_period is None:
            row.limit_period = "day"
        if timezone is not None:
            row.limit_timezone = check_timezone(timezone) if timezone else ""
        if allowed_ips is not None:
            row.allowed_ips = ",".join(check_cidrs(allowed_ips))
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def set_account_budget(
    engine: Engine, account_name: str, budget: int | None, period: str = "month"
) -> None:
    """Give an account a budget of `budget` micro-units per `period` (None removes it)."""
    if budget is not None and budget < 0:
        raise AccountError("a budget cannot be negative")
    with Session(engine) as session:
        account = get_account(session, account_name)
        account.budget = budget
        account.budget_period = check_period(period, total=True) if budget is not None else None
        session.add(account)
        session.commit()


def spent(engine: Engine, scope: str, period: Period) -> int:
    """What `scope` (``key:<id>`` / ``account:<id>``) spent in `period` (settled calls)."""
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT spent FROM spend_counters WHERE scope = :s AND period = :p"),
            {"s": scope, "p": period.label},
        ).scalar()
    return int(found or 0)


def key_limit_info(engine: Engine, key: ApiKey, default_timezone: str = "UTC") -> dict[str, Any]:
    """A key's limits and its spend this period, as plain data (for listings and the API).

    ``spent`` is this period's spend for a period limit, the total for a total limit, and
    None when the key has no limit (nothing is counted for it).
    """
    timezone = key.limit_timezone or default_timezone
    info: dict[str, Any] = {
        "spend_limit": key.spend_limit,
        "period_limit": key.period_limit,
        "limit_period": key.limit_period,
        "limit_timezone": timezone,
        "allowed_ips": [r for r in key.allowed_ips.split(",") if r],
        "spent_total": None,
        "spent_this_period": None,
        "period_resets_at": None,
    }
    if key.spend_limit is not None:
        info["spent_total"] = spent(engine, f"key:{key.id}", current_period("total", "UTC", 0))
    if key.period_limit is not None and key.limit_period:
        period = current_period(key.limit_period, timezone, time.time())
        info["spent_this_period"] = spent(engine, f"key:{key.id}", period)
        info["period_resets_at"] = period.resets_at
    return info


def limit_summary(info: dict[str, Any]) -> str:
    """One short line for `tokone keys list`: e.g. ``1.250000/5.000000 daily``, or ``-``."""
    parts = []
    if info["period_limit"] is not None:
        word = PERIOD_WORDS.get(info["limit_period"] or "", "")
        used = format_amount(info["spent_this_period"] or 0)
        parts.append(f"{used}/{format_amount(info['period_limit'])} {word}")
    if info["spend_limit"] is not None:
        parts.append(
            f"{format_amount(info['spent_total'] or 0)}/{format_amount(info['spend_limit'])} total"
        )
    return ", ".join(parts) or "-"
