"""`/admin/audit`: the audit log — every state-changing admin action, newest first.

Written by the admin console, this API (actor ``admin-api``) and the CLI (actor ``cli``);
see :mod:`tokone.core.domain.audit`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, get
from litestar.params import Parameter
from tokone.core.domain.audit import AuditFilter, entry_dict, list_entries
from tokone.core.domain.usage_report import time_range
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.bodies import ISO_DATE, MAX_INTEGER
from tokone.plugins.admin_api.shared import ERRORS


class AuditOut(msgspec.Struct):
    """One audit entry: who (`actor`), what (`action` on `target`), when, from where (`ip`),
    and the values before and after (JSON values, null when there is none)."""

    id: int
    created_at: float
    actor: str
    actor_user_id: int | None
    action: str
    target: str
    before: Any
    after: Any
    ip: str


class AuditController(Controller):
    """The audit log."""

    path = "/audit"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def audit_list(
        self,
        gateway: Gateway,
        actor: str = "",
        action: str = "",
        target: str = "",
        since: Annotated[str | None, Parameter(pattern=ISO_DATE)] = None,
        until: Annotated[str | None, Parameter(pattern=ISO_DATE)] = None,
        limit: Annotated[int, Parameter(ge=1, le=10_000)] = 100,
        offset: Annotated[int, Parameter(ge=0, le=MAX_INTEGER)] = 0,
    ) -> list[AuditOut]:
        """Audit entries, newest first (`action` exact, or a prefix ending in `.`)."""
        start, end = time_range(since, until)
        wanted = AuditFilter(actor, action, target, start, end)
        return [
            AuditOut(**entry_dict(e)) for e in list_entries(gateway.engine, wanted, limit, offset)
        ]
