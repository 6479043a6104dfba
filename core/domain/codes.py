"""Redemption codes: prepaid top-ups an operator hands out and a user redeems with their key.

A code is printed once when it is created; only its HMAC hash (keyed with the server secret,
like user keys) and a short visible prefix are stored. Redeeming is one transaction whose
first statement is the conditional UPDATE that marks the code used (``... WHERE
redeemed_at IS NULL``): the database lets exactly one of any number of concurrent redeemers
through, on SQLite and PostgreSQL alike, and the same transaction credits the account with a
``topup`` ledger entry whose ``request_id`` is ``code:<id>`` (unique per kind, a second line
of defence against a double credit).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, text
from sqlmodel import Session, col, select
from tokone.core.domain.errors import AccountError
from tokone.core.domain.keys import KeyHasher
from tokone.core.domain.money import format_amount
from tokone.core.store.tables import Account, LedgerEntry, RedemptionCode

CODE_PREFIX = "tkc-"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Upper-case letters and digits without the look-alikes 0/O and 1/I."""
CODE_GROUPS = 5
CODE_GROUP_CHARS = 5
MAX_CODES_PER_BATCH = 10_000

_MARK_REDEEMED = text(
    "UPDATE redemption_codes SET redeemed_at = :now, redeemed_by = :account_id "
    "WHERE code_hash = :code_hash AND redeemed_at IS NULL "
    "AND (expires_at IS NULL OR expires_at > :now)"
)
_DISABLE = text(
    "UPDATE redemption_codes SET redeemed_at = :now, disabled_at = :now "
    "WHERE id = :id AND redeemed_at IS NULL"
)


def generate_code() -> str:
    """A new code, e.g. `tkc-7KQ2M-…` (25 random characters, about 125 bits)."""
    groups = (
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_CHARS))
        for _ in range(CODE_GROUPS)
    )
    return CODE_PREFIX + "-".join(groups)


def normalise_code(code: str) -> str:
    """A code as typed by a person: surrounding blanks dropped, letters upper-cased."""
    code = code.strip()
    if code.lower().startswith(CODE_PREFIX):
        code = CODE_PREFIX + code[len(CODE_PREFIX) :].upper()
    return code


def create_codes(
    engine: Engine,
    hasher: KeyHasher,
    amount: int,
    count: int,
    actor: str,
    *,
    batch: str = "",
    expires_at: float | None = None,
) -> list[str]:
    """Create `count` codes worth `amount` micro-units each, optionally named as a `batch`
    and redeemable only until `expires_at`; return them (the only time they are shown)."""
    if len(batch) > 100:
        raise AccountError("a batch name must be at most 100 characters")
    if expires_at is not None and expires_at <= time.time():
        raise AccountError("a code's expiry must be in the future")
    if amount <= 0:
        raise AccountError("a code must be worth a positive amount")
    if not 1 <= count <= MAX_CODES_PER_BATCH:
        raise AccountError(f"count must be from 1 to {MAX_CODES_PER_BATCH}")
    codes = [generate_code() for _ in range(count)]
    with Session(engine) as session:
        for code in codes:
            session.add(
                RedemptionCode(
                    code_hash=hasher.hash(code),
                    prefix=code[: len(CODE_PREFIX) + CODE_GROUP_CHARS] + "…",
                    amount=amount,
                    created_by=actor,
                    batch=batch,
                    expires_at=expires_at,
                )
            )
        session.commit()
    return codes


@dataclass(slots=True)
class CodeInfo:
    """A code as listings show it (never the code itself)."""

    id: int
    prefix: str
    amount: int
    created_by: str
    created_at: float
    redeemed_at: float | None
    redeemed_by: str | None
    """Name of the account that redeemed it."""
    batch: str = ""
    expires_at: float | None = None
    disabled_at: float | None = None

    @property
    def state(self) -> str:
        """`unused`, `redeemed`, `disabled` or `expired`."""
        if self.disabled_at is not None:
            return "disabled"
        if self.redeemed_at is not None:
            return "redeemed"
        if self.expires_at is not None and self.expires_at <= time.time():
            return "expired"
        return "unused"


def list_codes(engine: Engine, *, unused_only: bool = False) -> list[CodeInfo]:
    """Every code (or only the unredeemed ones), oldest first."""
    with Session(engine) as session:
        query = select(RedemptionCode, Account.name).join(
            Account, col(Account.id) == col(RedemptionCode.redeemed_by), isouter=True
        )
        if unused_only:
            query = query.where(col(RedemptionCode.redeemed_at).is_(None))
        rows = session.exec(query.order_by(col(RedemptionCode.id))).all()
    return [
        CodeInfo(
            id=code.id or 0,
            prefix=code.prefix,
            amount=code.amount,
            created_by=code.created_by,
            created_at=code.created_at,
            redeemed_at=code.redeemed_at,
            redeemed_by=name,
            batch=code.batch,
            expires_at=code.expires_at,
            disabled_at=code.disabled_at,
        )
        for code, name in rows
    ]


def redeem(engine: Engine, hasher: KeyHasher, code: str, account_id: int) -> tuple[int, int]:
    """Redeem `code` for an account, exactly once; return (amount credited, new balance).

    Raises AccountError 404 for an unknown code and 409 for one already redeemed.
    """
    code_hash = hasher.hash(normalise_code(code))
    now = time.time()
    with Session(engine) as session:
        marked = cast(  # an UPDATE: a CursorResult, which has rowcount
            "CursorResult[Any]",
            session.execute(
                _MARK_REDEEMED, {"now": now, "account_id": account_id, "code_hash": code_hash}
            ),
        )
        if marked.rowcount != 1:
            session.rollback()
            found = session.exec(
                select(RedemptionCode).where(RedemptionCode.code_hash == code_hash)
            ).first()
            if found is None:
                raise AccountError("unknown redemption code", 404)
            if found.disabled_at is not None:
                raise AccountError("this code has been disabled", 409)
            if found.redeemed_at is None:
                raise AccountError("this code has expired", 409)
            raise AccountError("this code has already been redeemed", 409)
        row = session.exec(
            select(RedemptionCode).where(RedemptionCode.code_hash == code_hash)
        ).one()
        session.execute(
            text("UPDATE accounts SET balance = balance + :a WHERE id = :id"),
            {"a": row.amount, "id": account_id},
        )
        session.add(
            LedgerEntry(
                account_id=account_id,
                kind="topup",
                amount=row.amount,
                request_id=f"code:{row.id}",
                actor="code",
                note=f"redeemed {row.prefix} ({format_amount(row.amount)})",
            )
        )
        session.commit()
        balance = session.exec(select(Account.balance).where(Account.id == account_id)).one()
        return row.amount, balance


def disable_code(engine: Engine, code_id: int) -> None:
    """Make an unused code unredeemable (AccountError 404 unknown, 409 already used)."""
    with Session(engine) as session:
        marked = cast(
            "CursorResult[Any]", session.execute(_DISABLE, {"now": time.time(), "id": code_id})
        )
        if marked.rowcount != 1:
            session.rollback()
            if session.get(RedemptionCode, code_id) is None:
                raise AccountError(f"no code with id {code_id}", 404)
            raise AccountError(f"code {code_id} is already redeemed or disabled", 409)
        session.commit()
