"""Read-only queries behind the console pages: calls, daily series, per-key totals, ledger.

Totals come from :func:`tokone.core.domain.usage_report.usage_report` (the numbers the CLI
and the admin API show); what is here only lists rows and buckets them by day, for
one account (the user console) or for all of them (the admin console).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Integer, cast, func
from sqlmodel import Session, col, select
from tokone.core.domain.ledger_entries import MANUAL_KINDS
from tokone.core.store.tables import ApiKey, LedgerEntry, UsageRecord

DAY = 86400


@dataclass(slots=True)
class CallFilter:
    """Which calls to show: one account's (the user console) or every account's (None, the
    admin console, which may also filter by channel)."""

    account_id: int | None
    key_id: int | None = None
    model: str | None = None
    since: float | None = None
    until: float | None = None
    provider: str | None = None

    def where(self) -> list[Any]:
        """SQL conditions for usage records."""
        conditions: list[Any] = []
        if self.account_id is not None:
            conditions.append(UsageRecord.account_id == self.account_id)
        if self.provider:
            conditions.append(UsageRecord.provider == self.provider)
        if self.key_id is not None:
            conditions.append(UsageRecord.key_id == self.key_id)
        if self.model:
            conditions.append(UsageRecord.model == self.model)
        if self.since is not None:
            conditions.append(UsageRecord.created_at >= self.since)
        if self.until is not None:
            conditions.append(UsageRecord.created_at < self.until)
        return conditions


def calls(engine: Engine, wanted: CallFilter, limit: int, offset: int = 0) -> list[dict[str, Any]]:
    """The filtered calls, newest first, each with its key's visible prefix and name."""
    query = (
        select(UsageRecord, ApiKey.prefix, ApiKey.name)
        .join(ApiKey, col(ApiKey.id) == col(UsageRecord.key_id), isouter=True)
        .where(*wanted.where())
        .order_by(col(UsageRecord.id).desc())
        .limit(limit)
        .offset(offset)
    )
    with Session(engine) as session:
        rows = session.exec(query).all()
    return [call_row(record, prefix, name) for record, prefix, name in rows]


def call_row(record: UsageRecord, prefix: str | None, key_name: str | None) -> dict[str, Any]:
    """One usage record as the pages and the CSV show it."""
    return {
        "id": record.id,
        "time": record.created_at,
        "account_id": record.account_id,
        "provider": record.provider,
        "request_id": record.request_id,
        "key_id": record.key_id,
        "key_prefix": prefix or "",
        "key_name": key_name or "",
        "model": record.model,
        "endpoint": record.endpoint,
        "stream": record.stream,
        "input_tokens": record.input_tokens,
        "cached_input_tokens": record.cached_input_tokens,
        "output_tokens": record.output_tokens,
        "estimated": record.estimated,
        "cost": record.cost,
        "status": record.status,
        "latency_ms": record.latency_ms,
    }


def iter_calls(engine: Engine, wanted: CallFilter, batch: int = 1000) -> Iterator[dict[str, Any]]:
    """Every filtered call, newest first, read `batch` rows at a time (keyset pagination, so
    memory stays flat however many rows there are)."""
    last_id: int | None = None
    while True:
        query = (
            select(UsageRecord, ApiKey.prefix, ApiKey.name)
            .join(ApiKey, col(ApiKey.id) == col(UsageRecord.key_id), isouter=True)
            .where(*wanted.where())
            .order_by(col(UsageRecord.id).desc())
            .limit(batch)
        )
        if last_id is not None:
            query = query.where(col(UsageRecord.id) < last_id)
        with Session(engine) as session:
            rows = session.exec(query).all()
        for record, prefix, name in rows:
            yield call_row(record, prefix, name)
        if len(rows) < batch:
            return
        last_id = rows[-1][0].id


def daily(engine: Engine, wanted: CallFilter, days: int = 30) -> list[tuple[str, int, int]]:
    """(UTC date, requests, cost) for each of the last `days` days (or the filter's range,
    at most 366 days), zero days included, oldest first."""
    end = wanted.until if wanted.until is not None else time.time()
    start = wanted.since if wanted.since is not None else end - days * DAY
    start = max(start, end - 366 * DAY)
    first, last = int(start // DAY), int((end - 1e-6) // DAY)
    with Session(engine) as session:
        bucket: Any = (
            cast(UsageRecord.created_at / DAY, Integer)
            if engine.dialect.name == "sqlite"
            else func.floor(UsageRecord.created_at / DAY)
        )
        conditions = [*wanted.where(), UsageRecord.created_at >= first * DAY]
        rows = session.exec(
            select(bucket, func.count(col(UsageRecord.id)), func.sum(UsageRecord.cost))
            .where(*conditions)
            .group_by(bucket)
        ).all()
    found = {int(day): (int(count), int(cost or 0)) for day, count, cost in rows}
    out = []
    for day in range(first, last + 1):
        count, cost = found.get(day, (0, 0))
        out.append((time.strftime("%Y-%m-%d", time.gmtime(day * DAY)), count, cost))
    return out


@dataclass(slots=True)
class KeyStats:
    """What one key has done: calls, spend and the last call's time."""

    requests: int = 0
    cost: int = 0
    last_used: float | None = None


def key_stats(engine: Engine, account_id: int) -> dict[int, KeyStats]:
    """Per-key totals for an account's keys (keys never used are absent)."""
    with Session(engine) as session:
        rows = session.exec(
            select(
                UsageRecord.key_id,
                func.count(col(UsageRecord.id)),
                func.sum(UsageRecord.cost),
                func.max(UsageRecord.created_at),
            )
            .where(UsageRecord.account_id == account_id)
            .group_by(col(UsageRecord.key_id))
        ).all()
    return {
        int(key_id): KeyStats(int(count), int(cost or 0), last)
        for key_id, count, cost, last in rows
        if key_id is not None
    }


def money_entries(engine: Engine, account_id: int, limit: int = 100) -> list[LedgerEntry]:
    """The account's top-ups, refunds and adjustments, newest first (not the captures)."""
    with Session(engine) as session:
        query = (
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id, col(LedgerEntry.kind).in_(MANUAL_KINDS))
            .order_by(col(LedgerEntry.id).desc())
            .limit(limit)
        )
        return list(session.exec(query).all())


def account_models(engine: Engine, account_id: int) -> list[str]:
    """Models the account has called, by name."""
    with Session(engine) as session:
        rows = session.exec(
            select(UsageRecord.model).where(UsageRecord.account_id == account_id).distinct()
        ).all()
    return sorted(m for m in rows if m)
