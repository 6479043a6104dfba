"""The admin console's catalogue pages: groups (create, re-price), channels (switch off / on,
test request) and redemption codes (batches, their CSV, disable). Module-level handlers; the
:class:`~tokone.plugins.console.admin_pages.AdminPages` (``admin``), the ``console`` and the
``gateway`` come in as dependencies the admin router provides."""

from __future__ import annotations

import csv
import io
from typing import Any

from litestar import Request, Response, get, post
from tokone.core.domain.codes import list_codes
from tokone.core.domain.errors import AccountError
from tokone.core.gateway import Gateway
from tokone.plugins.console import admin_ops
from tokone.plugins.console.admin_pages import AdminPages
from tokone.plugins.console.pages import Console


async def groups_page(
    admin: AdminPages, request: Request[Any, Any, Any], status: int = 200, **extra: Any
) -> Response[Any]:
    """The groups page, with `status` and any message or error."""
    rows = await admin.console.run(admin_ops.groups_data, admin.gateway)
    return admin.page(request, "admin_groups.html", status, title="Groups", groups=rows, **extra)


@get("/groups", include_in_schema=False)
async def groups(admin: AdminPages, request: Request[Any, Any, Any]) -> Response[Any]:
    """Groups, multipliers and account counts; create; re-price."""
    return await groups_page(admin, request)


@post("/groups", include_in_schema=False, status_code=200)
async def group_create(
    admin: AdminPages, console: Console, gateway: Gateway, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Create a group."""
    form = await console.form(request)
    try:
        message = await console.run(admin_ops.group_create, gateway, admin.actor(request), form)
    except AccountError as exc:
        return await groups_page(admin, request, exc.status, error=str(exc))
    return await groups_page(admin, request, message=message)


@post("/groups/{name:str}", include_in_schema=False, status_code=200)
async def group_set(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    name: str,
) -> Response[Any]:
    """Re-price a group."""
    form = await console.form(request)
    try:
        message = await console.run(admin_ops.group_set, gateway, admin.actor(request), name, form)
    except AccountError as exc:
        return await groups_page(admin, request, exc.status, error=str(exc))
    return await groups_page(admin, request, message=message)


async def channels_page(
    admin: AdminPages, request: Request[Any, Any, Any], status: int = 200, **extra: Any
) -> Response[Any]:
    """The channels page, with `status` and any message, error or test result."""
    rows = await admin.console.run(admin_ops.channels_data, admin.gateway)
    return admin.page(
        request, "admin_channels.html", status, title="Channels", channels=rows, **extra
    )


@get("/channels", include_in_schema=False)
async def channels(admin: AdminPages, request: Request[Any, Any, Any]) -> Response[Any]:
    """Every channel, its state in this process and its manual switch."""
    return await channels_page(admin, request)


@post("/channels/{name:str}/{action:str}", include_in_schema=False, status_code=200)
async def channel_action(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    name: str,
    action: str,
) -> Response[Any]:
    """Switch a channel off or on for every process, or send it a test request."""
    form = await console.form(request)
    try:
        if action == "test":
            result = await admin_ops.channel_test(gateway, admin.actor(request), name)
            return await channels_page(admin, request, tested=result)
        if action not in ("disable", "enable"):
            raise AccountError(f"unknown action {action!r}", 404)
        message = await console.run(
            admin_ops.channel_switch,
            gateway,
            admin.actor(request),
            name,
            action == "disable",
            form.get("reason", ""),
        )
    except AccountError as exc:
        return await channels_page(admin, request, exc.status, error=str(exc))
    return await channels_page(admin, request, message=message)


async def codes_page(
    admin: AdminPages, request: Request[Any, Any, Any], status: int = 200, **extra: Any
) -> Response[Any]:
    """The codes page (newest first), with `status` and any message or error."""
    rows = await admin.console.run(list_codes, admin.gateway.engine)
    return admin.page(
        request,
        "admin_codes.html",
        status,
        title="Redemption codes",
        codes=rows[::-1],
        **extra,
    )


@get("/codes", include_in_schema=False)
async def codes_list(admin: AdminPages, request: Request[Any, Any, Any]) -> Response[Any]:
    """Codes, used and unused, and the batch form."""
    return await codes_page(admin, request)


@post("/codes", include_in_schema=False, status_code=200)
async def codes_create(
    admin: AdminPages, console: Console, gateway: Gateway, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Create a batch; the codes are on this answer only (with a CSV download)."""
    form = await console.form(request)
    try:
        created, batch = await console.run(
            admin_ops.codes_create, gateway, admin.actor(request), form
        )
    except AccountError as exc:
        return await codes_page(admin, request, exc.status, error=str(exc))
    return admin.page(
        request,
        "admin_codes_shown.html",
        title="New codes",
        created=created,
        batch=batch,
        amount=form.get("amount", ""),
    )


@post("/codes.csv", include_in_schema=False, status_code=200)
async def codes_csv(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """The codes just shown, posted back by the page, as a CSV file (nothing is stored:
    the codes exist only in the admin's browser)."""
    form = await console.form(request)
    created = [c for c in form.get("codes", "").split() if c.startswith("tkc-")]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(("code", "amount", "batch"))
    for code in created:
        writer.writerow((code, form.get("amount", ""), form.get("batch", "")))
    name = "".join(c for c in form.get("batch", "") if c.isalnum() or c in "-_") or "codes"
    return Response(
        buffer.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="tokone-{name}.csv"',
            "cache-control": "no-store",
        },
    )


@post("/codes/{code_id:int}/disable", include_in_schema=False, status_code=200)
async def code_disable(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    code_id: int,
) -> Response[Any]:
    """Disable an unused code."""
    try:
        message = await console.run(admin_ops.code_disable, gateway, admin.actor(request), code_id)
    except AccountError as exc:
        return await codes_page(admin, request, exc.status, error=str(exc))
    return await codes_page(admin, request, message=message)


HANDLERS = [
    groups,
    group_create,
    group_set,
    channels,
    channel_action,
    codes_list,
    codes_create,
    codes_csv,
    code_disable,
]
"""The admin catalogue pages' route handlers."""
