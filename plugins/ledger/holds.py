"""Hold rows outside the batches: keeping this process's leases alive, releasing old ones.

A live process refreshes its lease rows' timestamps (`heartbeat`); rows older than the hold
timeout were left by a killed process and any process may release them (`release`). Safe
with several processes sweeping at once: a hold is released only by whoever deletes its row.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, TextClause
from tokone.plugins.ledger import sql


def heartbeat(engine: Engine, lease_prefix: str) -> None:
    """Mark the leases whose ids start with `lease_prefix` as alive."""
    with engine.begin() as conn:
        conn.execute(sql.HEARTBEAT, {"now": time.time(), "prefix": lease_prefix + "%"})


def release(engine: Engine, query: TextClause, params: dict[str, Any]) -> int:
    """Delete the holds `query` selects and give their amounts back; return how many."""
    released = 0
    with engine.begin() as conn:
        for request_id, account_id, amount in conn.execute(query, params).all():
            if conn.execute(sql.DELETE_HOLD, {"request_id": request_id}).rowcount == 1:
                conn.execute(sql.RELEASE, {"amount": amount, "account_id": account_id})
                released += 1
    return released


def reachable(engine: Engine) -> bool:
    """Whether the database answers a `SELECT 1` now."""
    try:
        with engine.connect() as conn:
            conn.execute(sql.PING)
    except Exception:
        return False
    return True
