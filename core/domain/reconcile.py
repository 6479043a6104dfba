"""Reconciliation: an account's cached balance and holds against the rows they summarise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, select
from tokone.core.domain.accounts import get_account
from tokone.core.store.tables import Hold, LedgerEntry, UsageRecord


@dataclass
class Reconciliation:
    """An account's cached balance and holds against what the ledger, holds and usage say."""

    account: str
    balance: int
    ledger_balance: int
    held: int
    open_holds: int
    captured: int
    """Sum of the account's capture entries, as a positive amount."""
    usage_cost: int
    """Sum of the account's usage-record costs."""

    @property
    def ok(self) -> bool:
        """Whether the caches match the entries and every charge has its usage record."""
        return (
            self.balance == self.ledger_balance
            and self.held == self.open_holds
            and self.captured == self.usage_cost
        )


def reconcile(engine: Engine, name: str) -> Reconciliation:
    """Recompute an account's balance from its ledger, its holds from the holds table, and
    compare what it was charged with what its usage records cost."""
    with Session(engine) as session:
        account = get_account(session, name)

        def total(column: Any, *where: Any) -> int:
            return int(session.exec(select(func.coalesce(func.sum(column), 0)).where(*where)).one())

        return Reconciliation(
            name,
            account.balance,
            total(LedgerEntry.amount, LedgerEntry.account_id == account.id),
            account.held,
            total(Hold.amount, Hold.account_id == account.id),
            -total(
                LedgerEntry.amount,
                LedgerEntry.account_id == account.id,
                LedgerEntry.kind == "capture",
            ),
            total(UsageRecord.cost, UsageRecord.account_id == account.id),
        )
