"""Operations on user keys: create, list, enable / disable / revoke, rotate.

Generating and hashing a key is :mod:`tokone.core.domain.keys`; this module stores them.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlmodel import Session, col, select
from tokone.core.domain.accounts import get_account
from tokone.core.domain.errors import AccountError
from tokone.core.domain.keys import KeyHasher, generate_key, visible_prefix
from tokone.core.store.tables import Account, ApiKey


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
