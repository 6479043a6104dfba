"""One account's share of a writer batch: grow, spend and trim its lease in a few statements."""

from __future__ import annotations

from sqlalchemy import Connection
from tokone.plugins.ledger import sql
from tokone.plugins.ledger.jobs import Job, LeaseJob, Report, SettleJob, TrimJob


def write_account_batch(
    conn: Connection,
    lease_id: str,
    account_id: int,
    jobs: list[Job],
    now: float,
    grants: list[tuple[LeaseJob, int | None]],
) -> Report:
    """Apply `jobs` (all for `account_id`) inside the open transaction `conn`.

    Lease growth is decided under the account's lock against ``balance - held``; costs
    are taken out of the balance and out of the lease (never below zero: a call that cost
    more than its hold spends the difference from the balance alone). Each lease job's
    grant is appended to `grants`; the return value is the account's :class:`Report`.
    The statements are constant in number: one locking read, one balance update, one lease
    row write and multi-row inserts of the captures and usage records.
    """
    key = {"lease_id": lease_id, "account_id": account_id}
    leases = [j for j in jobs if isinstance(j, LeaseJob)]
    settles = [j for j in jobs if isinstance(j, SettleJob)]
    asked_trim = sum(j.amount for j in jobs if isinstance(j, TrimJob))
    available = conn.execute(sql.LOCK, key).scalar() if leases else None
    found = conn.execute(sql.LEASE, key).scalar()
    lease = found or 0
    held = 0
    for job in leases:
        granted = 0
        if available is not None and job.need <= available:
            granted = min(max(job.want, job.need), available)
            available -= granted
        lease += granted
        held += granted
        grants.append((job, granted))
    cost = sum(job.row["cost"] for job in settles)
    from_lease = min(cost, lease)
    lease -= from_lease
    trimmed = min(asked_trim, lease)
    lease -= trimmed
    held -= from_lease + trimmed
    if cost or held:
        conn.execute(sql.MOVE, {"cost": cost, "held": held, "account_id": account_id})
    if found is None and lease > 0:
        conn.execute(sql.INSERT_LEASE, {**key, "amount": lease, "now": now})
    elif found is not None and lease > 0:
        conn.execute(sql.UPDATE_LEASE, {**key, "amount": lease, "now": now})
    elif found is not None:
        conn.execute(sql.DELETE_HOLD, {"request_id": lease_id})
    captures = [
        {
            "account_id": account_id,
            "amount": -j.row["cost"],
            "request_id": j.row["request_id"],
            "now": now,
        }
        for j in settles
        if j.row["cost"]
    ]
    if captures:
        conn.execute(sql.CAPTURE, captures)
    if settles:
        conn.execute(sql.USAGE, [{**job.row, "now": now} for job in settles])
    return Report(account_id, lease, settled=cost, trimmed=asked_trim)
