"""Operator settings stored in the database: they win over `tokone.toml`, for every process.

A setting is a name and a JSON value in the ``settings`` table; the console re-reads them at
most once a second (so a change made in one process is seen by every process within about a
second). Only the names of :data:`KNOWN` can be stored, each checked by its validator; a
removed setting falls back to the config file's value.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import parse_amount
from tokone.core.store.tables import Setting


def _policy(value: Any) -> Any:
    if value not in ("open", "invite", "closed"):
        raise AccountError("signup must be open, invite or closed")
    return value


def _credit(value: Any) -> Any:
    if not isinstance(value, str) or parse_amount(value) < 0:
        raise AccountError('signup_credit must be a non-negative amount, e.g. "1" or "0.25"')
    return value


def _domains(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(d, str) and d for d in value):
        raise AccountError("allowed_email_domains must be a list of domain names")
    cleaned = [d.strip().lower().lstrip("@") for d in value]
    if any(" " in d or "." not in d for d in cleaned):
        raise AccountError("allowed_email_domains must be domain names like example.com")
    return cleaned


KNOWN: dict[str, Callable[[Any], Any]] = {
    "console.signup": _policy,
    "console.signup_credit": _credit,
    "console.allowed_email_domains": _domains,
}
"""Settings that may be stored, with the function that checks (and normalises) a value."""


def read_settings(engine: Engine) -> dict[str, Setting]:
    """Every stored setting, by name."""
    with Session(engine) as session:
        return {row.name: row for row in session.exec(select(Setting)).all()}


def stored_values(engine: Engine) -> dict[str, Any]:
    """Every stored setting's value (decoded), by name."""
    return {name: json.loads(row.value) for name, row in read_settings(engine).items()}


def set_setting(engine: Engine, name: str, value: Any, actor: str) -> tuple[Any, Any]:
    """Store a setting (None: remove it, back to the config's value); (before, after)."""
    check = KNOWN.get(name)
    if check is None:
        raise AccountError(f"unknown setting {name!r} (known: {', '.join(sorted(KNOWN))})", 404)
    with Session(engine) as session:
        row = session.get(Setting, name)
        before = json.loads(row.value) if row is not None else None
        if value is None:
            if row is not None:
                session.delete(row)
            session.commit()
            return before, None
        value = check(value)
        row = row or Setting(name=name, value="")
        row.value, row.updated_at, row.updated_by = json.dumps(value), time.time(), actor[:254]
        session.add(row)
        session.commit()
        return before, value
