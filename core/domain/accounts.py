"""Account, key and top-up operations shared by the CLI and the admin API."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass
from decimal import MAX_EMAX, MIN_EMIN, Decimal, InvalidOperation, localcontext
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, func, text
from sqlmodel import Session, col, select
from tokone.core.domain.keys import KeyHasher, generate_key, visible_prefix
from tokone.core.store.tables import Account, ApiKey, Group, Hold, LedgerEntry, UsageRecord

MICRO = 1_000_000
MAX_UNITS = 10**12
"""Amounts are below a trillion currency units (10**18 micro-units, within 64 bits)."""


MANUAL_KINDS = ("topup", "refund", "adjustment")
"""Ledger entries an operator writes (`capture` is the gateway's; see `tokone.plugins.ledger`)."""


class AccountError(Exception):
    """An operation cannot be done (unknown account, duplicate name, bad amount).

    `status` is the HTTP status the admin API answers with: 400 bad input, 404 unknown,
    409 conflict with existing state.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_amount(value: str) -> int:
    """A currency amount like `10`, `-2` or `0.25` as integer micro-units.

    Exact (no rounding ever happens): at most 6 decimal places, and less than
    :data:`MAX_UNITS` in absolute value so every amount fits a 64-bit column.
    """
    try:
        amount = Decimal(value.strip())
    except (InvalidOperation, ValueError):
        raise AccountError(
            f"not an amount: {value!r} (expected a number like 10 or 0.25)"
        ) from None
    if not amount.is_finite():
        raise AccountError(f"not an amount: {value!r} (expected a finite number)")
    if abs(amount) >= MAX_UNITS:
        raise AccountError(f"amount too large: {value!r} (at most {MAX_UNITS - 1:_})")
    with localcontext() as ctx:
        # enough digits and exponent range that scaling is exact (no rounding, no underflow)
        ctx.prec = len(amount.as_tuple().digits) + 8
        ctx.Emin, ctx.Emax = MIN_EMIN, MAX_EMAX
        micro = amount.scaleb(6)
        if micro != micro.to_integral_value():
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
        raise AccountError(f"no account named {name!r} (see `tokone accounts list`)", 404)
    return account


def create_account(
    engine: Engine, name: str, group: str = "default", known_groups: Collection[str] = ()
) -> Account:
    """Create an account with a zero balance; `group` must be one of `known_groups` if given."""
    if not name or len(name) > 200:
        raise AccountError("an account name must be 1 to 200 characters")
    if known_groups and group not in known_groups:
        raise AccountError(
            f"unknown group {group!r} (known: {', '.join(sorted(known_groups))})", 404
        )
    with Session(engine) as session:
        if session.exec(select(Account).where(Account.name == name)).first() is not None:
            raise AccountError(f"an account named {name!r} already exists", 409)
        account = Account(name=name, group=group)
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def list_accounts(engine: Engine) -> list[Account]:
    """Every account, by name."""
    with Session(engine) as session:
        return list(session.exec(select(Account).order_by(Account.name)).all())


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


def set_override(engine: Engine, name: str, multiplier: float | None) -> Account:
    """Give an account its own price multiplier (None: back to its group's)."""
    if multiplier is not None:
        multiplier = check_multiplier(multiplier)
    with Session(engine) as session:
        account = get_account(session, name)
        account.multiplier_override = multiplier
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


def check_multiplier(value: float | str) -> float:
    """A price multiplier: a finite number >= 0 with at most 6 decimals, else AccountError."""
    try:
        exact = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise AccountError(f"not a multiplier: {value!r} (expected a number like 0.8)") from None
    if not exact.is_finite() or exact < 0 or exact > 1000:
        raise AccountError(f"not a multiplier: {value!r} (expected a number from 0 to 1000)")
    if exact != exact.quantize(Decimal("0.000001")):
        raise AccountError(f"not a multiplier: {value!r} (at most 6 decimal places)")
    return float(exact)


def list_groups(engine: Engine, config_groups: dict[str, float]) -> list[tuple[str, float, str]]:
    """Every group as (name, multiplier, source); the database wins over the config."""
    merged = {name: (multiplier, "config") for name, multiplier in config_groups.items()}
    with Session(engine) as session:
        for group in session.exec(select(Group)).all():
            merged[group.name] = (group.multiplier, "database")
    return [(name, m, source) for name, (m, source) in sorted(merged.items())]


def create_group(
    engine: Engine, name: str, multiplier: float | str, config_groups: Collection[str]
) -> Group:
    """Define a new pricing group in the database (a name not used yet)."""
    if not name or len(name) > 100:
        raise AccountError("a group name must be 1 to 100 characters")
    value = check_multiplier(multiplier)
    with Session(engine) as session:
        if name in config_groups or session.get(Group, name) is not None:
            raise AccountError(
                f"a group named {name!r} already exists (change it with `groups set`)", 409
            )
        group = Group(name=name, multiplier=value)
        session.add(group)
        session.commit()
        session.refresh(group)
        return group


def set_group(
    engine: Engine, name: str, multiplier: float | str, config_groups: Collection[str]
) -> Group:
    """Change a group's multiplier; a group from the config gets a database row overriding it."""
    value = check_multiplier(multiplier)
    with Session(engine) as session:
        group = session.get(Group, name)
        if group is None:
            if name not in config_groups:
                raise AccountError(f"no group named {name!r} (see `tokone groups list`)", 404)
            group = Group(name=name)
        group.multiplier = value
        session.add(group)
        session.commit()
        session.refresh(group)
        return group


def known_groups(engine: Engine, config_groups: Collection[str]) -> set[str]:
    """Names of every group (config and database)."""
    with Session(engine) as session:
        return set(config_groups) | set(session.exec(select(Group.name)).all())


def account_summary(engine: Engine, name: str) -> dict[str, Any]:
    """Balance, group, usage totals and keys of one account, as plain data."""
    with Session(engine) as session:
        account = get_account(session, name)
        keys = session.exec(
            select(ApiKey).where(ApiKey.account_id == account.id).order_by(col(ApiKey.id))
        ).all()
        requests, tokens_in, tokens_out, cost = session.exec(
            select(
                func.count(col(UsageRecord.id)),
                func.coalesce(func.sum(UsageRecord.input_tokens), 0),
                func.coalesce(func.sum(UsageRecord.output_tokens), 0),
                func.coalesce(func.sum(UsageRecord.cost), 0),
            ).where(UsageRecord.account_id == account.id)
        ).one()
    return {
        "name": account.name,
        "id": account.id,
        "group": account.group,
        "multiplier_override": account.multiplier_override,
        "balance": format_amount(account.balance),
        "balance_micro": account.balance,
        "held_micro": account.held,
        "available_micro": account.balance - account.held,
        "usage": {
            "requests": requests,
            "input_tokens": int(tokens_in),
            "output_tokens": int(tokens_out),
            "cost": format_amount(int(cost)),
            "cost_micro": int(cost),
        },
        "keys": [key_info(k) for k in keys],
    }


def key_info(key: ApiKey) -> dict[str, Any]:
    """A key row as plain data (never the key or its hash)."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "status": key.status,
        "models": [m for m in key.models.split(",") if m],
        "expires_at": key.expires_at,
    }


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
        assert account.id is not None  # a row read from the database
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
        raise AccountError(f"no key with id {key_id} (see `tokone keys list`)", 404)
    return row


def set_key_status(engine: Engine, key_id: int, status: str) -> ApiKey:
    """Enable, disable or revoke a key. A revoked key cannot be enabled again."""
    with Session(engine) as session:
        row = get_key(session, key_id)
        if row.status == "revoked" and status != "revoked":
            raise AccountError(f"key {key_id} is revoked; create a new key instead", 409)
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
            raise AccountError(f"key {key_id} is revoked; create a new key instead", 409)
        row.key_hash = hasher.hash(key)
        row.prefix = visible_prefix(key, prefix)
        session.add(row)
        session.commit()
        session.refresh(row)
        return row, key


def account_name(engine: Engine, account_id: int) -> str:
    """The name of the account with `account_id`."""
    with Session(engine) as session:
        account = session.get(Account, account_id)
        if account is None:
            raise AccountError(f"no account with id {account_id}", 404)
        return account.name


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


def list_keys(engine: Engine, account_name: str | None = None) -> list[tuple[ApiKey, str]]:
    """Keys with their account names, optionally for one account."""
    with Session(engine) as session:
        query = select(ApiKey, Account.name).join(
            Account, col(Account.id) == col(ApiKey.account_id)
        )
        if account_name:
            query = query.where(ApiKey.account_id == get_account(session, account_name).id)
        return [
            (key, account) for key, account in session.exec(query.order_by(col(ApiKey.id))).all()
        ]
