"""Account, key and top-up operations shared by the CLI and the admin API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlalchemy import Engine, func, text
from sqlmodel import Session, select
from tokone.core.keys import KeyHasher, generate_key, visible_prefix
from tokone.core.models import Account, ApiKey, Hold, LedgerEntry

MICRO = 1_000_000


class AccountError(Exception):
    """An operation cannot be done (unknown account, duplicate name, bad amount)."""


def parse_amount(value: str) -> int:
    """A currency amount like `10` or `0.25` as integer micro-units; at most 6 decimals."""
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise AccountError(
            f"not an amount: {value!r} (expected a number like 10 or 0.25)"
        ) from None
    micro = amount * MICRO
    if not amount.is_finite() or micro != micro.to_integral_value():
        raise AccountError(f"not an amount: {value!r} (at most 6 decimal places)")
    return int(micro)


def format_amount(micro: int) -> str:
    """Micro-units as a currency amount with 6 decimals, e.g. `9.999125`."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    return f"{sign}{whole}.{frac:06d}"


def get_account(session: Session, name: str) -> Account:
    """The account called `name`, or AccountError."""
    account = session.exec(select(Account).where(Account.name == name)).first()
    if account is None:
        raise AccountError(f"no account named {name!r} (see `tokone accounts list`)")
    return account


def create_account(engine: Engine, name: str, group: str = "default") -> Account:
    """Create an account with a zero balance."""
    with Session(engine) as session:
        if session.exec(select(Account).where(Account.name == name)).first() is not None:
            raise AccountError(f"an account named {name!r} already exists")
        account = Account(name=name, group=group)
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def add_entry(engine: Engine, name: str, kind: str, amount: int, actor: str, note: str = "") -> int:
    """Append a ledger entry (top-up, refund, adjustment) and update the running balance.

    Returns the new balance. The UPDATE is relative (`balance = balance + x`), so it is safe
    against the gateway settling calls on the same account at the same moment.
    """
    if kind == "topup" and amount <= 0:
        raise AccountError("a top-up must be a positive amount")
    with Session(engine) as session:
        account = get_account(session, name)
        session.add(
            LedgerEntry(account_id=account.id, kind=kind, amount=amount, actor=actor, note=note)
        )
        session.execute(
            text("UPDATE accounts SET balance = balance + :a WHERE id = :id"),
            {"a": amount, "id": account.id},
        )
        session.commit()
        session.refresh(account)
        return account.balance


@dataclass
class Reconciliation:
    """An account's cached balance and holds against what the ledger and holds table say."""

    account: str
    balance: int
    ledger_balance: int
    held: int
    open_holds: int

    @property
    def ok(self) -> bool:
        """Whether the caches match the entries."""
        return self.balance == self.ledger_balance and self.held == self.open_holds


def reconcile(engine: Engine, name: str) -> Reconciliation:
    """Recompute an account's balance from its ledger and its holds from the holds table."""
    with Session(engine) as session:
        account = get_account(session, name)
        ledger = session.exec(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(
                LedgerEntry.account_id == account.id
            )
        ).one()
        holds = session.exec(
            select(func.coalesce(func.sum(Hold.amount), 0)).where(Hold.account_id == account.id)
        ).one()
        return Reconciliation(name, account.balance, int(ledger), account.held, int(holds))


def create_key(
    engine: Engine,
    hasher: KeyHasher,
    prefix: str,
    account_name: str,
    *,
    name: str = "",
    models: list[str] | None = None,
    expires_in_days: float | None = None,
) -> tuple[ApiKey, str]:
    """Create a key for an account; return the row and the key itself (shown once)."""
    key = generate_key(prefix)
    with Session(engine) as session:
        account = get_account(session, account_name)
        row = ApiKey(
            account_id=account.id,
            name=name,
            prefix=visible_prefix(key, prefix),
            key_hash=hasher.hash(key),
            models=",".join(models or []),
            expires_at=time.time() + expires_in_days * 86400 if expires_in_days else None,
        )
        session.add(row)
        session.commit()
        session.refresh(row)
        return row, key


def get_key(session: Session, key_id: int) -> ApiKey:
    """The key row with `key_id`, or AccountError."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise AccountError(f"no key with id {key_id} (see `tokone keys list`)")
    return row


def set_key_status(engine: Engine, key_id: int, status: str) -> ApiKey:
    """Enable, disable or revoke a key. A revoked key cannot be enabled again."""
    with Session(engine) as session:
        row = get_key(session, key_id)
        if row.status == "revoked" and status != "revoked":
            raise AccountError(f"key {key_id} is revoked; create a new key instead")
        row.status = status
        session.add(row)
        session.commit()
        session.refresh(row)
        return row


def rotate_key(engine: Engine, hasher: KeyHasher, prefix: str, key_id: int) -> tuple[ApiKey, str]:
    """Give key `key_id` a new secret; the old one stops working at once."""
    key = generate_key(prefix)
    with Session(engine) as session:
        row = get_key(session, key_id)
        if row.status == "revoked":
            raise AccountError(f"key {key_id} is revoked; create a new key instead")
        row.key_hash = hasher.hash(key)
        row.prefix = visible_prefix(key, prefix)
        session.add(row)
        session.commit()
        session.refresh(row)
        return row, key


def list_keys(engine: Engine, account_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Keys with their account names, optionally for one account."""
    with Session(engine) as session:
        query = select(ApiKey, Account.name).join(Account, Account.id == ApiKey.account_id)
        if account_name:
            query = query.where(ApiKey.account_id == get_account(session, account_name).id)
        return [(key, account) for key, account in session.exec(query.order_by(ApiKey.id)).all()]
