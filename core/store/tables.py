"""Database tables (sqlmodel). Money columns are integer micro-units; nothing is a float.

The ledger is append-only: a balance is the sum of an account's ledger entries, and
``Account.balance`` / ``Account.held`` are running caches that ``tokone accounts check``
recomputes from the entries.
"""

from __future__ import annotations

import time

from sqlalchemy import BigInteger, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel


def now() -> float:
    """Current Unix time in seconds (stored as a float column)."""
    return time.time()


class Account(SQLModel, table=True):
    """A customer with a prepaid balance."""

    __tablename__ = "accounts"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    group: str = Field(default="default")
    multiplier_override: float | None = Field(default=None)
    balance: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    """Running sum of ledger entries (micro-units)."""
    held: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    """Sum of open holds (micro-units)."""
    created_at: float = Field(default_factory=now)


class ApiKey(SQLModel, table=True):
    """A user key. Only its HMAC hash is stored; `prefix` is shown in listings."""

    __tablename__ = "api_keys"

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    name: str = ""
    prefix: str
    key_hash: str = Field(index=True, unique=True)
    models: str = ""
    """Comma-separated model names the key may use; empty means all."""
    status: str = "enabled"
    """`enabled`, `disabled` or `revoked`."""
    expires_at: float | None = None
    created_at: float = Field(default_factory=now)


class LedgerEntry(SQLModel, table=True):
    """One append-only money movement: topup, capture, refund, adjustment."""

    __tablename__ = "ledger_entries"
    __table_args__ = (
        UniqueConstraint("request_id", "kind", name="uq_ledger_request_kind"),
        Index("ix_ledger_account_kind", "account_id", "kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    kind: str
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    """Signed micro-units: positive adds to the balance, negative spends it."""
    request_id: str | None = Field(default=None)
    actor: str = ""
    note: str = ""
    created_at: float = Field(default_factory=now)


class Hold(SQLModel, table=True):
    """An open reservation of balance for an in-flight request (deleted when settled)."""

    __tablename__ = "holds"

    request_id: str = Field(primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: float = Field(default_factory=now, index=True)


class UsageRecord(SQLModel, table=True):
    """What one call consumed and cost."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_account_time", "account_id", "created_at"),
        Index("ix_usage_model_time", "model", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(unique=True)
    account_id: int = Field(foreign_key="accounts.id")
    key_id: int | None = Field(default=None, index=True)
    endpoint: str = ""
    model: str = ""
    provider: str = ""
    upstream_model: str = ""
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False
    cost: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    multiplier: float = 1.0
    tier: str = "default"
    status: int = 200
    latency_ms: float = 0.0
    created_at: float = Field(default_factory=now, index=True)


class Group(SQLModel, table=True):
    """A pricing group defined in the database (overrides `[groups]` of the same name)."""

    __tablename__ = "groups"

    name: str = Field(primary_key=True)
    multiplier: float = 1.0
    created_at: float = Field(default_factory=now)


class RedemptionCode(SQLModel, table=True):
    """A top-up code: redeemed once, by a user's key, for `amount` micro-units."""

    __tablename__ = "redemption_codes"

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(index=True, unique=True)
    prefix: str
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_by: str = ""
    created_at: float = Field(default_factory=now)
    redeemed_at: float | None = None
    redeemed_by: int | None = Field(default=None, foreign_key="accounts.id")


class ChannelState(SQLModel, table=True):
    """An operator's manual switch for one provider channel, shared by every process."""

    __tablename__ = "channel_states"

    provider: str = Field(primary_key=True)
    disabled: bool = False
    reason: str = ""
    updated_at: float = Field(default_factory=now)
