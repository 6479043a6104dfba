"""What the admin API answers: the response structs and the rows they are made from."""

from __future__ import annotations

import msgspec
from tokone.core.domain.keys import key_info
from tokone.core.domain.money import format_amount
from tokone.core.store.tables import Account, ApiKey, LedgerEntry


class AccountOut(msgspec.Struct):
    """An account and its balance (`available` = balance - held)."""

    id: int
    name: str
    group: str
    multiplier_override: float | None
    balance: str
    balance_micro: int
    held_micro: int
    available_micro: int


class BalanceOut(msgspec.Struct):
    """An account's balance after a money movement."""

    account: str
    balance: str
    balance_micro: int


class CheckOut(msgspec.Struct):
    """`tokone accounts check` as data: caches against the entries they summarise."""

    account: str
    ok: bool
    balance_micro: int
    ledger_balance_micro: int
    held_micro: int
    open_holds_micro: int
    captured_micro: int
    usage_cost_micro: int


class EntryOut(msgspec.Struct):
    """One ledger entry."""

    id: int
    kind: str
    amount: str
    amount_micro: int
    request_id: str | None
    actor: str
    note: str
    created_at: float


class GroupOut(msgspec.Struct):
    """A pricing group; `source` is `config` or `database` (which wins on a clash)."""

    name: str
    multiplier: float
    source: str


class KeyOut(msgspec.Struct):
    """A key as listings show it (never the key)."""

    id: int
    account: str
    name: str
    prefix: str
    status: str
    models: list[str]
    expires_at: float | None


class NewKeyOut(msgspec.Struct):
    """A created or rotated key: `key` is shown this once and never again."""

    id: int
    account: str
    prefix: str
    key: str


class CodeOut(msgspec.Struct):
    """A redemption code as listings show it (never the code)."""

    id: int
    prefix: str
    amount: str
    amount_micro: int
    created_by: str
    created_at: float
    redeemed_at: float | None
    redeemed_by: str | None
    batch: str = ""
    expires_at: float | None = None
    disabled_at: float | None = None
    state: str = "unused"
    """`unused`, `redeemed`, `disabled` or `expired`."""


class NewCodesOut(msgspec.Struct):
    """Created codes: shown this once; only their hashes are stored."""

    amount: str
    amount_micro: int
    codes: list[str]


def account_out(account: Account) -> AccountOut:
    """An account row as an answer."""
    return AccountOut(
        id=account.id or 0,
        name=account.name,
        group=account.group,
        multiplier_override=account.multiplier_override,
        balance=format_amount(account.balance),
        balance_micro=account.balance,
        held_micro=account.held,
        available_micro=account.balance - account.held,
    )


def key_out(key: ApiKey, account: str) -> KeyOut:
    """A key row as an answer."""
    info = key_info(key)
    return KeyOut(account=account, **info)


def new_key_out(row: ApiKey, key: str, account: str) -> NewKeyOut:
    """A created or rotated key row and its secret as an answer."""
    return NewKeyOut(id=row.id or 0, account=account, prefix=row.prefix, key=key)


def entry_out(entry: LedgerEntry) -> EntryOut:
    """A ledger entry row as an answer."""
    return EntryOut(
        id=entry.id or 0,
        kind=entry.kind,
        amount=format_amount(entry.amount),
        amount_micro=entry.amount,
        request_id=entry.request_id,
        actor=entry.actor,
        note=entry.note,
        created_at=entry.created_at,
    )
