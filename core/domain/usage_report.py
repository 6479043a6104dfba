"""Usage reports: what accounts, keys and models consumed and cost over a time range.

One query serves the CLI (`tokone usage`), the admin API (`GET /admin/usage`) and the user
dashboard (`GET /v1/dashboard/usage`): usage records filtered by account, key, model and
time, summed per (account, key, model), with grand totals. Every usage record counts as a
request, refused and failed calls included (they cost 0); `errors` counts those with an
HTTP status of 400 or more.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, case, func
from sqlmodel import Session, col, select
from tokone.core.domain.accounts import get_account
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount
from tokone.core.store.tables import Account, ApiKey, UsageRecord


def parse_time(value: str) -> float:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) as a Unix timestamp."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise AccountError(
            f"not a date: {value!r} (expected ISO 8601, e.g. 2025-01-31 or 2025-01-31T12:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def time_range(
    since: str | None = None, until: str | None = None, days: float | None = None
) -> tuple[float | None, float | None]:
    """(since, until) timestamps from ISO strings or "the last `days` days"."""
    if since and days is not None:
        raise AccountError("give either since or days, not both")
    if days is not None and days <= 0:
        raise AccountError("days must be positive")
    start = parse_time(since) if since else None
    if days is not None:
        start = time.time() - days * 86400
    return start, parse_time(until) if until else None


@dataclass(slots=True)
class UsageFilter:
    """Which usage records a report covers (None: no restriction)."""

    account: str | None = None
    key_id: int | None = None
    model: str | None = None
    since: float | None = None
    """Inclusive lower bound (Unix time)."""
    until: float | None = None
    """Exclusive upper bound (Unix time)."""
    provider: str | None = None
    """Only calls served by this channel (`[[providers]]` name)."""


@dataclass(slots=True)
class UsageLine:
    """Totals of one (account, key, model), or of the whole report."""

    account: str = ""
    key_id: int | None = None
    key_prefix: str = ""
    model: str = ""
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_micro: int = 0

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data, the cost also as a currency amount."""
        return {**asdict(self), "cost": format_amount(self.cost_micro)}


@dataclass(slots=True)
class UsageReport:
    """Lines per (account, key, model), largest cost first, and their totals."""

    filter: UsageFilter
    lines: list[UsageLine] = field(default_factory=list)
    totals: UsageLine = field(default_factory=UsageLine)

    def to_dict(self) -> dict[str, Any]:
        """As JSON-ready data."""
        totals = self.totals.to_dict()
        for name in ("account", "key_id", "key_prefix", "model"):
            totals.pop(name)
        return {
            "filter": asdict(self.filter),
            "lines": [line.to_dict() for line in self.lines],
            "totals": totals,
        }


def _conditions(session: Session, wanted: UsageFilter) -> list[Any]:
    """The SQL conditions on usage records that `wanted` stands for."""
    conditions: list[Any] = []
    if wanted.account is not None:
        conditions.append(UsageRecord.account_id == get_account(session, wanted.account).id)
    if wanted.key_id is not None:
        conditions.append(UsageRecord.key_id == wanted.key_id)
    if wanted.model is not None:
        conditions.append(UsageRecord.model == wanted.model)
    if wanted.since is not None:
        conditions.append(UsageRecord.created_at >= wanted.since)
    if wanted.until is not None:
        conditions.append(UsageRecord.created_at < wanted.until)
    if wanted.provider is not None:
        conditions.append(UsageRecord.provider == wanted.provider)
    return conditions


def _sums() -> tuple[Any, ...]:
    """The aggregates behind a :class:`UsageLine`'s numbers, in its order: requests, errors,
    input, cached input and output tokens, cost."""
    return (
        func.count(col(UsageRecord.id)),
        func.sum(case((col(UsageRecord.status) >= 400, 1), else_=0)),
        func.sum(UsageRecord.input_tokens),
        func.sum(UsageRecord.cached_input_tokens),
        func.sum(UsageRecord.output_tokens),
        func.sum(UsageRecord.cost),
    )


def usage_totals(engine: Engine, wanted: UsageFilter) -> UsageLine:
    """Only the grand totals of :func:`usage_report` (one aggregate, no grouping: what a
    list page over millions of rows needs)."""
    query = select(*_sums())
    with Session(engine) as session:
        numbers = session.exec(query.where(*_conditions(session, wanted))).one()
    return UsageLine("", None, "", "", *(int(n or 0) for n in numbers))


def usage_report(engine: Engine, wanted: UsageFilter) -> UsageReport:
    """Sum the usage records `wanted` selects, per account, key and model."""
    query = (
        select(Account.name, UsageRecord.key_id, ApiKey.prefix, UsageRecord.model, *_sums())
        .join(Account, col(Account.id) == col(UsageRecord.account_id))
        .join(ApiKey, col(ApiKey.id) == col(UsageRecord.key_id), isouter=True)
        .group_by(
            col(Account.name), col(UsageRecord.key_id), col(ApiKey.prefix), col(UsageRecord.model)
        )
    )
    with Session(engine) as session:
        rows: Sequence[Any] = session.exec(query.where(*_conditions(session, wanted))).all()
    report = UsageReport(wanted)
    totals = report.totals
    for account, key_id, prefix, model, *numbers in rows:
        line = UsageLine(account, key_id, prefix or "", model, *(int(n or 0) for n in numbers))
        report.lines.append(line)
        totals.requests += line.requests
        totals.errors += line.errors
        totals.input_tokens += line.input_tokens
        totals.cached_input_tokens += line.cached_input_tokens
        totals.output_tokens += line.output_tokens
        totals.cost_micro += line.cost_micro
    report.lines.sort(key=lambda x: (-x.cost_micro, x.account, x.key_id or 0, x.model))
    return report


def format_table(report: UsageReport) -> str:
    """The report as a fixed-width text table with a totals line."""
    header = (
        f"{'ACCOUNT':<16} {'KEY':<16} {'MODEL':<24} {'REQS':>6} {'ERRS':>5} "
        f"{'INPUT':>10} {'CACHED':>9} {'OUTPUT':>10} {'COST':>16}"
    )
    out = [header]

    def row(account: str, key: str, model: str, line: UsageLine) -> str:
        return (
            f"{account:<16} {key:<16} {model:<24} {line.requests:>6} {line.errors:>5} "
            f"{line.input_tokens:>10} {line.cached_input_tokens:>9} {line.output_tokens:>10} "
            f"{format_amount(line.cost_micro):>16}"
        )

    for line in report.lines:
        key = f"{line.key_id} {line.key_prefix}" if line.key_id is not None else "-"
        out.append(row(line.account[:16], key[:16], line.model[:24], line))
    out.append(row("TOTAL", "", "", report.totals))
    return "\n".join(out)
