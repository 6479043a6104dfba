"""The SQL of spend limits: grow a lease under the counter's lock, settle, trim, sweep.

Every function runs one transaction on the plugin's single worker thread. A limit's room
is ``limit - spent - sum(leases)`` for its ``(scope, period)``, decided under the counter
row's lock (a no-op ``UPDATE … RETURNING``: the row lock on PostgreSQL, the write lock on
SQLite), so several processes never lease more than the limit between them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, text

ENSURE = text(
    "INSERT INTO spend_counters (scope, period, spent, updated_at) "
    "VALUES (:scope, :period, 0, :now) ON CONFLICT (scope, period) DO NOTHING"
)
LOCK = text(
    "UPDATE spend_counters SET spent = spent WHERE scope = :scope AND period = :period "
    "RETURNING spent"
)
LEASED = text(
    "SELECT COALESCE(SUM(amount), 0) FROM spend_holds WHERE scope = :scope AND period = :period"
)
OWN_LEASE = text("SELECT amount FROM spend_holds WHERE lease_id = :lease_id")
INSERT_LEASE = text(
    "INSERT INTO spend_holds (lease_id, scope, period, amount, created_at) "
    "VALUES (:lease_id, :scope, :period, :amount, :now)"
)
UPDATE_LEASE = text(
    "UPDATE spend_holds SET amount = :amount, created_at = :now WHERE lease_id = :lease_id"
)
DELETE_LEASE = text("DELETE FROM spend_holds WHERE lease_id = :lease_id")
SPEND = text(
    "INSERT INTO spend_counters (scope, period, spent, updated_at) "
    "VALUES (:scope, :period, :cost, :now) ON CONFLICT (scope, period) "
    "DO UPDATE SET spent = spend_counters.spent + :cost, updated_at = :now"
)
HEARTBEAT = text("UPDATE spend_holds SET created_at = :now WHERE lease_id LIKE :prefix")
STALE = text("DELETE FROM spend_holds WHERE created_at < :cutoff")
OWN = text("DELETE FROM spend_holds WHERE lease_id LIKE :prefix")


def grow(
    engine: Engine, lease_id: str, scope: str, period: str, limit: int, need: int, want: int
) -> int:
    """Grow the lease by `want` (at least `need`) if the limit's room allows; return the grant
    (0: the room cannot cover `need`)."""
    params = {"scope": scope, "period": period, "now": time.time(), "lease_id": lease_id}
    with engine.begin() as conn:
        conn.execute(ENSURE, params)
        spent = int(conn.execute(LOCK, params).scalar() or 0)
        room = limit - spent - int(conn.execute(LEASED, params).scalar() or 0)
        if need > room:
            return 0
        granted = min(max(want, need), room)
        found = conn.execute(OWN_LEASE, params).scalar()
        if found is None:
            conn.execute(INSERT_LEASE, {**params, "amount": granted})
        else:
            conn.execute(UPDATE_LEASE, {**params, "amount": int(found) + granted})
        return granted


@dataclass(slots=True)
class Settlement:
    """What one batch does to one lease: costs to count and an amount to give back."""

    lease_id: str
    scope: str
    period: str
    cost: int = 0
    trim: int = 0


def write(engine: Engine, batch: list[Settlement]) -> list[tuple[int, int]]:
    """Count the costs and trim the leases; return (taken from the lease, trimmed) per item.

    A cost beyond what the lease still holds (a call that cost more than its hold) is
    counted in full but takes the lease only down to zero.
    """
    out = []
    now = time.time()
    with engine.begin() as conn:
        for item in sorted(batch, key=lambda s: (s.scope, s.period)):
            params = {"scope": item.scope, "period": item.period, "now": now}
            if item.cost:
                conn.execute(SPEND, {**params, "cost": item.cost})
            lease = int(conn.execute(OWN_LEASE, {"lease_id": item.lease_id}).scalar() or 0)
            taken = min(item.cost, lease)
            trimmed = min(item.trim, lease - taken)
            left = lease - taken - trimmed
            if left > 0 and left != lease:
                conn.execute(UPDATE_LEASE, {"lease_id": item.lease_id, "amount": left, "now": now})
            elif left <= 0 and lease > 0:
                conn.execute(DELETE_LEASE, {"lease_id": item.lease_id})
            out.append((taken, trimmed))
    return out


def sweep(engine: Engine, prefix: str, hold_timeout: float) -> None:
    """Keep this process's leases alive and drop leases older than `hold_timeout` seconds."""
    now = time.time()
    with engine.begin() as conn:
        conn.execute(HEARTBEAT, {"now": now, "prefix": prefix + "%"})
        conn.execute(STALE, {"cutoff": now - hold_timeout})


def release_own(engine: Engine, prefix: str) -> None:
    """Give every lease of this process back (at shutdown)."""
    with engine.begin() as conn:
        conn.execute(OWN, {"prefix": prefix + "%"})
