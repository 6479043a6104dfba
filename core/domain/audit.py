"""The audit log: every state-changing action of an operator, with before and after values.

Written by the admin console, the admin API and the CLI (``actor`` says which and who), read
by the console's Audit page, ``GET /admin/audit`` and ``tokone audit``. Values are stored as
JSON text. An entry is written right after the action succeeded, in the same request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from tokone.core.store.tables import AuditEntry


def _json(value: Any) -> str:
    return (
        "" if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    )


def record(
    engine: Engine,
    actor: str,
    action: str,
    target: str = "",
    *,
    before: Any = None,
    after: Any = None,
    ip: str = "",
    actor_user_id: int | None = None,
) -> AuditEntry:
    """Append one audit entry (`before` / `after` are JSON-ready values or None)."""
    entry = AuditEntry(
        actor=actor[:254],
        actor_user_id=actor_user_id,
        action=action,
        target=target[:300],
        before=_json(before),
        after=_json(after),
        ip=ip[:64],
    )
    with Session(engine) as session:
        session.add(entry)
        session.commit()
        session.refresh(entry)
    return entry


@dataclass(slots=True)
class AuditFilter:
    """Which audit entries to list (None / "": no restriction)."""

    actor: str = ""
    action: str = ""
    """An exact action, or a family prefix ending in a dot (``account.``)."""
    target: str = ""
    since: float | None = None
    until: float | None = None

    def where(self) -> list[Any]:
        """SQL conditions for audit entries."""
        conditions: list[Any] = []
        if self.actor:
            conditions.append(AuditEntry.actor == self.actor)
        if self.action.endswith("."):
            conditions.append(col(AuditEntry.action).startswith(self.action))
        elif self.action:
            conditions.append(AuditEntry.action == self.action)
        if self.target:
            conditions.append(AuditEntry.target == self.target)
        if self.since is not None:
            conditions.append(AuditEntry.created_at >= self.since)
        if self.until is not None:
            conditions.append(AuditEntry.created_at < self.until)
        return conditions


def list_entries(
    engine: Engine, wanted: AuditFilter | None = None, limit: int = 100, offset: int = 0
) -> list[AuditEntry]:
    """Audit entries `wanted` selects, newest first."""
    query = select(AuditEntry).where(*(wanted or AuditFilter()).where())
    with Session(engine) as session:
        rows = session.exec(
            query.order_by(col(AuditEntry.id).desc()).limit(limit).offset(offset)
        ).all()
    return list(rows)


def count_entries(engine: Engine, wanted: AuditFilter | None = None) -> int:
    """How many audit entries `wanted` selects."""
    query = select(func.count(col(AuditEntry.id))).where(*(wanted or AuditFilter()).where())
    with Session(engine) as session:
        return int(session.exec(query).one())


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry as JSON-ready data, `before` and `after` decoded."""
    return {
        "id": entry.id,
        "created_at": entry.created_at,
        "actor": entry.actor,
        "actor_user_id": entry.actor_user_id,
        "action": entry.action,
        "target": entry.target,
        "before": json.loads(entry.before) if entry.before else None,
        "after": json.loads(entry.after) if entry.after else None,
        "ip": entry.ip,
    }
