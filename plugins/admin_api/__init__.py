"""The operators' admin API under `/admin/…`: accounts, groups, keys, money, codes, usage, audit.

Every route requires an admin key (``Authorization: Bearer <one of [server] admin_keys>``,
see :func:`tokone.core.http.admin_auth.make_admin_guard`); user keys are refused. The OpenAPI schema
is served by Litestar at ``/schema`` (``/schema/openapi.json``). Errors use the OpenAI error
shape: 400 bad input, 401 no admin key, 404 unknown account / key / group / code, 409
conflict (duplicate name, revoked key, refund already made).

Amounts are sent as decimal strings (``"10"``, ``"2.5"``, at most 6 decimals) or whole
currency units (``10``) in ``amount``, or as integer micro-units in ``amount_micro``; JSON
floats are refused so no amount is ever rounded. Answers carry both forms. Changes to keys,
groups and multipliers take effect on every gateway process within about a second (a group
change made here applies to this process at once).

Architecture
============

The plugin is this package, registered as ``admin_api``: its ``routes`` hook mounts
:func:`admin_router`, one Litestar ``Router`` at ``/admin`` with the admin guard, the
``AccountError`` → error-shape handler and the ``gateway`` dependency, over one
``Controller`` per resource:

* :mod:`~tokone.plugins.admin_api.accounts` — accounts, top-ups, adjustments, refunds,
  the ledger and its reconciliation;
* :mod:`~tokone.plugins.admin_api.groups` — pricing groups;
* :mod:`~tokone.plugins.admin_api.keys` — user keys;
* :mod:`~tokone.plugins.admin_api.limits` — key spend limits and IP allow-lists, account
  budgets and alerts;
* :mod:`~tokone.plugins.admin_api.codes` — redemption codes;
* :mod:`~tokone.plugins.admin_api.usage` — usage reports;
* :mod:`~tokone.plugins.admin_api.audit` — the audit log (every state-changing route here
  writes to it, as actor ``admin-api``);
* :mod:`~tokone.plugins.admin_api.settings` — settings stored in the database;
* :mod:`~tokone.plugins.admin_api.bodies` / :mod:`~tokone.plugins.admin_api.answers` — what
  the routes accept and answer (their OpenAPI schemas);
* :mod:`~tokone.plugins.admin_api.shared` — the documented errors every route shares.

Every operation itself is in :mod:`tokone.core.domain` (shared with the CLI); the handlers
only translate HTTP to it. The channel switches under ``/admin/providers`` belong to the
``channel_admin`` plugin.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router
from litestar.di import Provide
from tokone.core.domain.errors import AccountError
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.http.admin_auth import ADMIN_PATH, make_admin_guard
from tokone.core.http.ingress import error_response
from tokone.core.types import Family
from tokone.plugins.admin_api.accounts import AccountController
from tokone.plugins.admin_api.audit import AuditController
from tokone.plugins.admin_api.codes import CodeController
from tokone.plugins.admin_api.groups import GroupController
from tokone.plugins.admin_api.keys import KeyController
from tokone.plugins.admin_api.limits import LimitsController
from tokone.plugins.admin_api.settings import SettingsController
from tokone.plugins.admin_api.usage import UsageController


def account_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """An AccountError in the OpenAI error shape with its status."""
    assert isinstance(exc, AccountError)
    kind = {404: "not_found"}.get(exc.status, "invalid_request")
    return error_response(Family.OPENAI, GatewayError(kind, str(exc), status=exc.status))


def admin_router(gateway: Gateway) -> Router:
    """Every admin route, behind the admin guard, with `gateway` as their dependency."""

    def provide_gateway() -> Gateway:
        return gateway

    return Router(
        path=ADMIN_PATH,
        route_handlers=[
            AccountController,
            GroupController,
            KeyController,
            LimitsController,
            CodeController,
            UsageController,
            AuditController,
            SettingsController,
        ],
        guards=[make_admin_guard(gateway)],
        dependencies={"gateway": Provide(provide_gateway, sync_to_thread=False)},
        exception_handlers={AccountError: account_error},
        tags=["admin"],
    )


@hookimpl
def routes(gateway: Gateway) -> list[Any]:
    """Mount the admin API."""
    return [admin_router(gateway)]
