"""`/admin/keys`: user keys — create, list, disable / enable / revoke, rotate.

A created or rotated key is shown in that answer only; listings never show a key.
"""

from __future__ import annotations

from typing import Any, cast

from litestar import Controller, Request, get, post
from sqlmodel import Session
from tokone.core.domain.accounts import account_name
from tokone.core.domain.key_ops import create_key, get_key, list_keys, rotate_key, set_key_status
from tokone.core.domain.spend_limits import set_key_limits
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.answers import KeyOut, NewKeyOut, key_out, new_key_out
from tokone.plugins.admin_api.bodies import KeyId
from tokone.plugins.admin_api.limits import KeyCreateIn
from tokone.plugins.admin_api.shared import ERRORS, record


def status_route(action: str, status: str) -> Any:
    """The `POST /admin/keys/{key_id}/<action>` handler that sets a key's status."""

    @post(
        f"/{{key_id:int}}/{action}",
        sync_to_thread=True,
        status_code=200,
        name=f"admin.keys.{action}",
        responses=ERRORS,
    )
    def handler(
        self: Controller, key_id: KeyId, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> KeyOut:
        with Session(gateway.engine) as session:
            before = get_key(session, key_id).status
        row = set_key_status(gateway.engine, key_id, status)
        record(
            gateway,
            request,
            f"key.{action}",
            f"key:{key_id}",
            {"status": before},
            {"status": status},
        )
        return key_out(row, account_name(gateway.engine, row.account_id))

    # HTTPRouteHandler has __slots__, but the `post` subclass does not, so this works.
    cast(Any, handler).__doc__ = f"Set the key's status to `{status}`."
    return handler


class KeyController(Controller):
    """User keys."""

    path = "/keys"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def keys_list(self, gateway: Gateway, account: str | None = None) -> list[KeyOut]:
        """Keys (never the keys themselves), optionally of one account."""
        return [key_out(k, a) for k, a in list_keys(gateway.engine, account)]

    @post("/", sync_to_thread=True, responses=ERRORS)
    def keys_create(
        self, data: KeyCreateIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> NewKeyOut:
        """Create a key (with its spend limits and IP allow-list, if given); the answer is the
        only time the key is shown."""
        row, key = create_key(
            gateway.engine,
            gateway.hasher,
            gateway.config.server.key_prefix,
            data.account,
            name=data.name,
            models=data.models,
            expires_in_days=data.expires_in_days,
        )
        limited = data.spend_limit_micro is not None or data.period_limit_micro is not None
        if limited or data.allowed_ips:
            assert row.id is not None
            set_key_limits(
                gateway.engine,
                row.id,
                total=data.spend_limit_micro,
                per_period=data.period_limit_micro,
                period=data.limit_period,
                allowed_ips=data.allowed_ips,
            )
        record(
            gateway,
            request,
            "key.create",
            f"key:{row.id}",
            None,
            {"account": data.account, "prefix": row.prefix, "name": row.name},
        )
        return new_key_out(row, key, data.account)

    disable = status_route("disable", "disabled")
    enable = status_route("enable", "enabled")
    revoke = status_route("revoke", "revoked")

    @post("/{key_id:int}/rotate", sync_to_thread=True, status_code=200, responses=ERRORS)
    def keys_rotate(
        self, key_id: KeyId, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> NewKeyOut:
        """Give the key a new secret (shown this once); the old one stops working."""
        row, key = rotate_key(
            gateway.engine, gateway.hasher, gateway.config.server.key_prefix, key_id
        )
        record(gateway, request, "key.rotate", f"key:{key_id}", None, {"prefix": row.prefix})
        return new_key_out(row, key, account_name(gateway.engine, row.account_id))
