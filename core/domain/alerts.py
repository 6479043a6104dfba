"""Alert settings per account and the record of alert deliveries (the `alerts` plugin sends).

Shared by the CLI (``tokone alerts …``), the admin API and the console.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from tokone.core.domain.accounts import get_account
from tokone.core.domain.errors import AccountError
from tokone.core.store.tables import Account, AlertDelivery

KEEP = "keep"


def set_account_alerts(
    engine: Engine,
    account_name: str,
    *,
    threshold: int | str | None = KEEP,
    webhook: str | None = None,
    email: str | None = None,
) -> Account:
    """Set an account's low-balance threshold (micro-units, None: none), webhook URL and
    e-mail address ("" removes one; None or KEEP leaves it as is)."""
    if isinstance(threshold, int) and threshold < 0:
        raise AccountError("an alert threshold cannot be negative")
    if webhook and not webhook.startswith(("http://", "https://")):
        raise AccountError(f"not a webhook URL: {webhook!r} (http:// or https://)")
    if email and "@" not in email:
        raise AccountError(f"not an e-mail address: {email!r}")
    with Session(engine) as session:
        account = get_account(session, account_name)
        if threshold != KEEP:
            account.alert_threshold = threshold if isinstance(threshold, int) else None
        if webhook is not None:
            account.alert_webhook = webhook
        if email is not None:
            account.alert_email = email
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def list_deliveries(
    engine: Engine, account_name: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """The newest alert deliveries (optionally of one account), as plain data."""
    with Session(engine) as session:
        query = select(AlertDelivery).order_by(col(AlertDelivery.id).desc()).limit(limit)
        if account_name:
            query = query.where(AlertDelivery.account_id == get_account(session, account_name).id)
        return [
            {
                "id": row.id,
                "kind": row.kind,
                "channel": row.channel,
                "target": row.target,
                "status": row.status,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "created_at": row.created_at,
                "delivered_at": row.delivered_at,
            }
            for row in session.exec(query).all()
        ]
