"""What every admin handler shares: its documented error answers and the config's groups.

The handlers get the :class:`~tokone.core.gateway.Gateway` as the ``gateway`` dependency
(provided by the admin router, see :func:`tokone.plugins.admin_api.admin_router`); each
state-changing handler writes an audit entry with :func:`record`.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from tokone.core.domain import audit
from tokone.core.gateway import Gateway
from tokone.core.http.admin_auth import error_responses

ERRORS = error_responses(400, 401, 404, 409, 503)
"""The error answers every admin route documents (in the OpenAI error shape)."""


def config_groups(gateway: Gateway) -> dict[str, float]:
    """The pricing groups of `[groups]` in the config, by name: their multipliers."""
    return {name: group.multiplier for name, group in gateway.config.groups.items()}


def record(
    gateway: Gateway,
    request: Request[Any, Any, Any],
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
) -> None:
    """Write an audit entry for a state change made through this API (actor `admin-api`)."""
    audit.record(
        gateway.engine,
        "admin-api",
        action,
        target,
        before=before,
        after=after,
        ip=request.client.host if request.client else "",
    )
