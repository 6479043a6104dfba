"""Accounts: creating, finding and listing them, their own multiplier, their summary."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from tokone.core.domain.errors import AccountError
from tokone.core.domain.keys import key_info
from tokone.core.domain.money import check_multiplier, format_amount
from tokone.core.store.tables import Account, ApiKey, UsageRecord


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


def set_account_group(
    engine: Engine, name: str, group: str, known_groups: Collection[str]
) -> Account:
    """Move an account to another pricing group (one of `known_groups`)."""
    if group not in known_groups:
        raise AccountError(
            f"unknown group {group!r} (known: {', '.join(sorted(known_groups))})", 404
        )
    with Session(engine) as session:
        account = get_account(session, name)
        account.group = group
        session.add(account)
        session.commit()
        session.refresh(account)
        return account


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


def account_name(engine: Engine, account_id: int) -> str:
    """The name of the account with `account_id`."""
    with Session(engine) as session:
        account = session.get(Account, account_id)
        if account is None:
            raise AccountError(f"no account with id {account_id}", 404)
        return account.name
