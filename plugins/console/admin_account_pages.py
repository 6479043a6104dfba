"""The admin console's account pages: search accounts, onboard a user, one account's page
and the actions on accounts (money, override, group, budget), users and keys. Module-level
handlers; the :class:`~tokone.plugins.console.admin_pages.AdminPages` (``admin``), the
``console`` and the ``gateway`` come in as dependencies the admin router provides."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from tokone.core.domain import users
from tokone.core.domain.errors import AccountError
from tokone.core.gateway import Gateway
from tokone.plugins.console import admin_ops
from tokone.plugins.console.admin_pages import AdminPages
from tokone.plugins.console.pages import Console, page_number


async def account_page(
    admin: AdminPages,
    request: Request[Any, Any, Any],
    account_id: int,
    status: int = 200,
    **extra: Any,
) -> Response[Any]:
    """One account's page (or 404), with `status` and any message or error."""
    try:
        data = await admin.console.run(admin_ops.account_detail, admin.gateway, account_id)
    except AccountError as exc:
        return admin.page(request, "error.html", exc.status, title="Not found", error=str(exc))
    return admin.page(
        request,
        "admin_account.html",
        status,
        title=f"Account {data['account'].name}",
        **data,
        **extra,
    )


@get("/accounts", include_in_schema=False)
async def accounts(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    q: str = "",
    page: int = 1,
) -> Response[Any]:
    """Accounts by name or user e-mail, paginated."""
    data = await console.run(admin_ops.search_accounts, gateway, q, page_number(page))
    return admin.page(
        request,
        "admin_accounts.html",
        title="Users & accounts",
        groups=await console.run(admin_ops.config_groups_all, gateway),
        **data,
    )


@post("/users", include_in_schema=False, status_code=200)
async def user_create(
    admin: AdminPages, console: Console, gateway: Gateway, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Onboard a user; show the link that lets them set their password."""
    form = await console.form(request)
    try:
        user = await console.run(
            admin_ops.user_create,
            gateway,
            admin.actor(request),
            form,
            console.settings.password_policy,
        )
    except AccountError as exc:
        data = await console.run(admin_ops.search_accounts, gateway, "", 1)
        return admin.page(
            request,
            "admin_accounts.html",
            exc.status,
            title="Users & accounts",
            error=str(exc),
            groups=await console.run(admin_ops.config_groups_all, gateway),
            **data,
        )
    assert user.id is not None
    _, message = await console.run(
        admin_ops.user_action,
        gateway,
        admin.actor(request),
        user.id,
        "reset",
        admin.reset_link(request),
    )
    return await account_page(admin, request, user.account_id, message=f"Created. {message}")


@get("/accounts/{account_id:int}", include_in_schema=False)
async def account(
    admin: AdminPages, request: Request[Any, Any, Any], account_id: int
) -> Response[Any]:
    """One account: money, group, keys, users, calls, ledger, and the actions."""
    return await account_page(admin, request, account_id)


@post("/accounts/{account_id:int}/{action:str}", include_in_schema=False, status_code=200)
async def account_action(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    account_id: int,
    action: str,
) -> Response[Any]:
    """Top up, adjust, refund, set or clear the override, move group, set the budget."""
    form = await console.form(request)
    actor = admin.actor(request)
    try:
        if action in ("topup", "adjust", "refund"):
            message = await console.run(
                admin_ops.money_action, gateway, actor, account_id, action, form
            )
        elif action == "override":
            message = await console.run(admin_ops.override_action, gateway, actor, account_id, form)
        elif action == "group":
            message = await console.run(admin_ops.group_action, gateway, actor, account_id, form)
        elif action == "budget" and console.features.limits:
            message = await console.run(admin_ops.budget_action, gateway, actor, account_id, form)
        else:
            raise AccountError(f"unknown action {action!r}", 404)
    except AccountError as exc:
        return await account_page(admin, request, account_id, exc.status, error=str(exc))
    return await account_page(admin, request, account_id, message=message)


@post("/users/{user_id:int}/{action:str}", include_in_schema=False, status_code=200)
async def user_action(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    user_id: int,
    action: str,
) -> Response[Any]:
    """Disable or enable a user, or issue a password-reset link."""
    try:
        account_id, message = await console.run(
            admin_ops.user_action,
            gateway,
            admin.actor(request),
            user_id,
            action,
            admin.reset_link(request),
        )
    except AccountError as exc:
        found = await console.run(users.user_by_id, gateway.engine, user_id)
        return await account_page(admin, request, found.account_id, exc.status, error=str(exc))
    return await account_page(admin, request, account_id, message=message)


@post("/keys/{key_id:int}/{action:str}", include_in_schema=False, status_code=200)
async def key_action(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    key_id: int,
    action: str,
) -> Response[Any]:
    """Disable, enable, revoke or rotate any key (a rotated key is shown once)."""
    try:
        if action == "rotate":
            row, key = await console.run(
                admin_ops.key_rotate, gateway, admin.actor(request), key_id
            )
            return admin.page(
                request, "admin_key_shown.html", title="Rotated key", row=row, key=key
            )
        account_id = await console.run(
            admin_ops.key_action, gateway, admin.actor(request), key_id, action
        )
    except AccountError as exc:
        return admin.page(request, "error.html", exc.status, title="Refused", error=str(exc))
    return await account_page(admin, request, account_id, message=f"Key {key_id}: {action}d.")


HANDLERS = [accounts, user_create, account, account_action, user_action, key_action]
"""The admin account pages' route handlers."""
