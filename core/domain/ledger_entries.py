"""The entries an operator writes to the ledger (top-ups, refunds, adjustments), and reading it.

``capture`` entries are the gateway's (see :mod:`tokone.plugins.ledger`); an account's
balance is the sum of its entries, and ``accounts.balance`` a running cache of that sum.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Engine, text
from sqlmodel import Session, col, select
from tokone.core.domain.accounts import get_account
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount
from tokone.core.store.tables import Account, LedgerEntry

MANUAL_KINDS = ("topup", "refund", "adjustment")
"""Ledger entries an operator writes (`capture` is the gateway's; see `tokone.plugins.ledger`)."""


def add_entry(
    engine: Engine,
    name: str,
    kind: str,
    amount: int,
    actor: str,
    note: str = "",
    request_id: str | None = None,
) -> int:
    """Append a `topup`, `refund` or `adjustment` entry and update the running balance.

    Top-ups and refunds are positive, adjustments non-zero; a refund naming a `request_id`
    must belong to this account and not exceed what that call was charged (once per call).
    Returns the new balance. The balance UPDATE comes first and is relative
    (`balance = balance + x`): it takes the write lock before anything is read, so it is
    safe against the gateway settling calls on the same account at the same moment (and
    SQLite never has to upgrade a read transaction, which could fail under load).
    """
    if kind not in MANUAL_KINDS:
        raise AccountError(f"unknown entry kind {kind!r} (expected topup, refund or adjustment)")
    if kind in ("topup", "refund") and amount <= 0:
        raise AccountError(f"a {kind} must be a positive amount")
    if kind == "adjustment" and amount == 0:
        raise AccountError("an adjustment must not be zero")
    with Session(engine) as session:
        updated = cast(  # an UPDATE: a CursorResult, which has rowcount
            "CursorResult[Any]",
            session.execute(
                text("UPDATE accounts SET balance = balance + :a WHERE name = :name"),
                {"a": amount, "name": name},
            ),
        )
        if updated.rowcount != 1:
            raise AccountError(f"no account named {name!r} (see `tokone accounts list`)", 404)
        account = get_account(session, name)
        assert account.id is not None  # a row read from the database
        if request_id is not None:
            _check_refund(session, account, kind, amount, request_id)
        session.add(
            LedgerEntry(
                account_id=account.id,
                kind=kind,
                amount=amount,
                actor=actor,
                note=note,
                request_id=request_id,
            )
        )
        session.commit()
        session.refresh(account)
        return account.balance


def _check_refund(
    session: Session, account: Account, kind: str, amount: int, request_id: str
) -> None:
    if kind != "refund":
        raise AccountError("only a refund names a request id")
    captured = session.exec(
        select(LedgerEntry.amount).where(
            LedgerEntry.account_id == account.id,
            LedgerEntry.kind == "capture",
            LedgerEntry.request_id == request_id,
        )
    ).first()
    if captured is None:
        raise AccountError(
            f"account {account.name!r} was not charged for request {request_id!r}", 404
        )
    refunded = session.exec(
        select(LedgerEntry.id).where(
            LedgerEntry.kind == "refund", LedgerEntry.request_id == request_id
        )
    ).first()
    if refunded is not None:
        raise AccountError(f"request {request_id!r} was already refunded", 409)
    if amount > -captured:
        raise AccountError(
            f"a refund of {format_amount(amount)} exceeds the {format_amount(-captured)} "
            f"request {request_id!r} was charged"
        )


def ledger_entries(engine: Engine, name: str, limit: int = 100) -> list[LedgerEntry]:
    """An account's newest ledger entries, newest first."""
    with Session(engine) as session:
        account = get_account(session, name)
        query = (
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account.id)
            .order_by(col(LedgerEntry.id).desc())
            .limit(limit)
        )
        return list(session.exec(query).all())
