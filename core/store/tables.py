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
    budget: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """Spend cap per `budget_period` (micro-units; None: no budget). See `key_limits`."""
    budget_period: str | None = None
    """`day`, `week`, `month` or `total`."""
    alert_threshold: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """Alert when the balance drops below this (micro-units; None: no low-balance alert)."""
    alert_webhook: str = ""
    """URL the account's alerts are POSTed to ("" : none)."""
    alert_email: str = ""
    """Address the account's alerts are mailed to ("" : none)."""


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
    spend_limit: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """Total spend cap (micro-units; None: none). See the `key_limits` plugin."""
    period_limit: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """Spend cap per `limit_period` (micro-units; None: none)."""
    limit_period: str | None = None
    """`day`, `week` or `month`."""
    limit_timezone: str = ""
    """IANA time zone whose midnight starts a period ("" : the configured default, UTC)."""
    allowed_ips: str = ""
    """Comma-separated CIDR ranges the key may be used from; empty means anywhere."""


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
        Index("ix_usage_provider_time", "provider", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    request_id: str = Field(unique=True)
    account_id: int = Field(foreign_key="accounts.id")
    key_id: int | None = Field(default=None, index=True)
    endpoint: str = ""
    stream: bool = False
    """True when the client asked for a streamed reply (SSE, a Gemini stream, a WebSocket
    Responses turn)."""
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
    batch: str = ""
    """The batch name an operator gave when creating it ("" : none)."""
    expires_at: float | None = None
    """After this Unix time the code can no longer be redeemed (None: never)."""
    disabled_at: float | None = None
    """When an operator disabled it unused (it then also has `redeemed_at`, no `redeemed_by`)."""


class ChannelState(SQLModel, table=True):
    """An operator's manual switch for one provider channel, shared by every process."""

    __tablename__ = "channel_states"

    provider: str = Field(primary_key=True)
    disabled: bool = False
    reason: str = ""
    updated_at: float = Field(default_factory=now)


class User(SQLModel, table=True):
    """A person who signs in to the console; belongs to one account (the balance holder).

    `email` is stored lower-cased, so its unique index makes it unique case-insensitively.
    Only an argon2 hash of the password is kept.
    """

    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(index=True, unique=True)
    password_hash: str
    display_name: str = ""
    role: str = "user"
    """`user` or `admin`."""
    status: str = "active"
    """`active` or `disabled` (a disabled user cannot sign in and has no sessions)."""
    account_id: int = Field(foreign_key="accounts.id", index=True)
    created_at: float = Field(default_factory=now)
    last_login_at: float | None = None
    email_verified_at: float | None = None
    """When the user confirmed their e-mail (None: not confirmed, or never asked)."""


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser: only the SHA-256 of the session cookie is stored."""

    __tablename__ = "console_sessions"

    token_hash: str = Field(primary_key=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: float = Field(default_factory=now)
    last_seen_at: float = Field(default_factory=now)
    expires_at: float = Field(index=True)
    ip: str = ""
    user_agent: str = ""


class SpendCounter(SQLModel, table=True):
    """What a key or an account spent in one limit period (the `key_limits` plugin).

    `scope` is ``key:<id>`` or ``account:<id>``; `period` names the period (``total``,
    ``day:2026-12-02@UTC``, ...). The in-flight reservations against it are `SpendHold` rows.
    """

    __tablename__ = "spend_counters"

    scope: str = Field(primary_key=True)
    period: str = Field(primary_key=True)
    spent: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    updated_at: float = Field(default_factory=now)


class SpendHold(SQLModel, table=True):
    """One process's lease against a spend limit (deleted when given back or stale)."""

    __tablename__ = "spend_holds"
    __table_args__ = (Index("ix_spend_holds_scope_period", "scope", "period"),)

    lease_id: str = Field(primary_key=True)
    scope: str
    period: str
    amount: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: float = Field(default_factory=now, index=True)


class AlertState(SQLModel, table=True):
    """Whether an account's balance is below its alert threshold, and how often it crossed."""

    __tablename__ = "alert_states"

    account_id: int = Field(primary_key=True, foreign_key="accounts.id")
    below: bool = False
    crossings: int = 0


class AlertDelivery(SQLModel, table=True):
    """One alert to one destination, and how its delivery went (the `alerts` plugin).

    `dedupe` names the event (``low_balance:7:3``, ``key_limit:42:day:2026-12-02@UTC:80``);
    it is unique per channel, so an event is queued at most once whichever process saw it.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (UniqueConstraint("dedupe", "channel", name="uq_alert_dedupe_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    account_id: int = Field(foreign_key="accounts.id", index=True)
    kind: str
    dedupe: str
    channel: str
    """`webhook` or `email`."""
    target: str
    payload: str
    """The JSON body sent."""
    status: str = Field(default="pending", index=True)
    """`pending`, `delivered` or `failed` (gave up)."""
    attempts: int = 0
    next_attempt_at: float = Field(default_factory=now)
    last_error: str = ""
    created_at: float = Field(default_factory=now)
    delivered_at: float | None = None


class AuditEntry(SQLModel, table=True):
    """One state-changing action of an operator (console, admin API or CLI): who did what,
    when, from where, and the values before and after (JSON text)."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_target_time", "target", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: float = Field(default_factory=now, index=True)
    actor: str
    """Who: an admin's e-mail (console), ``admin-api`` or ``cli``."""
    actor_user_id: int | None = None
    action: str = Field(index=True)
    """What, e.g. ``account.topup``, ``group.set``, ``key.revoke``, ``channel.disable``."""
    target: str = ""
    """What it was done to, e.g. ``account:alice``, ``key:12``, ``group:vip``."""
    before: str = ""
    after: str = ""
    ip: str = ""


class Setting(SQLModel, table=True):
    """An operator's setting stored in the database (wins over `tokone.toml`); JSON value."""

    __tablename__ = "settings"

    name: str = Field(primary_key=True)
    value: str
    updated_at: float = Field(default_factory=now)
    updated_by: str = ""
