"""The admin console's site-wide pages: the overview, every account's usage (and its CSV),
the audit log and the settings (with the SMTP test). Module-level handlers; the
:class:`~tokone.plugins.console.admin_pages.AdminPages` (``admin``), the ``console`` and the
``gateway`` come in as dependencies the admin router provides."""

from __future__ import annotations

import smtplib
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Stream
from tokone.core.domain import audit
from tokone.core.domain.errors import AccountError
from tokone.core.gateway import Gateway
from tokone.plugins.console import admin_ops
from tokone.plugins.console.admin_pages import ADMIN_CSV_COLUMNS, USAGE_FILTERS, AdminPages
from tokone.plugins.console.mail import send_mail
from tokone.plugins.console.pages import Console, calls_csv, page_number


@get("/", include_in_schema=False)
async def overview(
    admin: AdminPages, console: Console, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Totals, charts, channels not in service, low balances."""
    data = await console.run(admin.overview_data)
    return admin.page(request, "admin_overview.html", title="Admin overview", **data)


@get("/usage", include_in_schema=False)
async def usage(admin: AdminPages, request: Request[Any, Any, Any], page: int = 1) -> Response[Any]:
    """Every account's calls: filters, totals, chart, pages."""
    filters = {k: request.query_params.get(k, "") for k in USAGE_FILTERS}
    try:
        data = await admin.usage_data(filters, page_number(page))
    except AccountError as exc:
        data = await admin.usage_data({}, 1)
        return admin.page(
            request, "admin_usage.html", exc.status, title="Usage", error=str(exc), **data
        )
    return admin.page(request, "admin_usage.html", title="Usage", **data)


@get("/usage.csv", include_in_schema=False)
async def usage_csv(
    admin: AdminPages, console: Console, gateway: Gateway, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Every filtered call as CSV, streamed."""
    filters = {k: request.query_params.get(k, "") for k in USAGE_FILTERS}
    try:
        wanted, _ = await console.run(admin.usage_filter, filters)
    except AccountError as exc:
        return Response(str(exc), status_code=400, media_type="text/plain")
    names = await console.run(admin_ops.account_names, gateway)
    return Stream(
        calls_csv(gateway.engine, wanted, ADMIN_CSV_COLUMNS, names),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": 'attachment; filename="tokone-usage-all.csv"',
            "cache-control": "no-store",
        },
    )


@get("/audit", include_in_schema=False)
async def audit_page(
    admin: AdminPages,
    console: Console,
    gateway: Gateway,
    request: Request[Any, Any, Any],
    actor: str = "",
    action: str = "",
    target: str = "",
    page: int = 1,
) -> Response[Any]:
    """Who did what, when, from where, with the values before and after."""
    wanted = audit.AuditFilter(actor=actor.strip(), action=action.strip(), target=target.strip())
    page = page_number(page)
    rows = await console.run(
        audit.list_entries,
        gateway.engine,
        wanted,
        admin_ops.PAGE_SIZE,
        (page - 1) * admin_ops.PAGE_SIZE,
    )
    total = await console.run(audit.count_entries, gateway.engine, wanted)
    return admin.page(
        request,
        "admin_audit.html",
        title="Audit log",
        entries=rows,
        filters={"actor": actor, "action": action, "target": target},
        page=page,
        pages=max(1, -(-total // admin_ops.PAGE_SIZE)),
    )


async def settings_page(
    admin: AdminPages, request: Request[Any, Any, Any], status: int = 200, **extra: Any
) -> Response[Any]:
    """The settings page, with `status` and any message or error."""
    rows = await admin.console.run(admin_ops.settings_data, admin.gateway, admin.console.settings)
    return admin.page(
        request,
        "admin_settings.html",
        status,
        title="Settings",
        settings=rows,
        smtp_host=admin.console.settings.smtp.host,
        **extra,
    )


@get("/settings", include_in_schema=False)
async def settings(admin: AdminPages, request: Request[Any, Any, Any]) -> Response[Any]:
    """Sign-up policy, credit and e-mail domains (database over tokone.toml); SMTP."""
    return await settings_page(admin, request)


@post("/settings", include_in_schema=False, status_code=200)
async def settings_save(
    admin: AdminPages, console: Console, gateway: Gateway, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Store the settings (each change audited)."""
    form = await console.form(request)
    try:
        message = await console.run(
            admin_ops.settings_save, gateway, admin.actor(request), form, console.settings
        )
    except AccountError as exc:
        return await settings_page(admin, request, exc.status, error=str(exc))
    console.forget_live()
    return await settings_page(admin, request, message=message)


@post("/settings/smtp-test", include_in_schema=False, status_code=200)
async def smtp_test(
    admin: AdminPages, console: Console, gateway: Gateway, request: Request[Any, Any, Any]
) -> Response[Any]:
    """Send a test message through the configured SMTP server."""
    form = await console.form(request)
    to = form.get("to", "").strip()
    if not console.settings.smtp.host:
        return await settings_page(admin, request, 409, error="No SMTP server is configured.")
    try:
        await console.run(
            send_mail,
            console.settings.smtp,
            to,
            "TokOne test message",
            "This is a test message from the TokOne admin console.\n",
        )
    except (OSError, smtplib.SMTPException) as exc:
        return await settings_page(admin, request, 502, error=f"Sending failed: {exc}")
    await console.run(
        admin.actor(request).record,
        gateway,
        "smtp.test",
        f"email:{to}",
        None,
        {"sent": True},
    )
    return await settings_page(admin, request, message=f"A test message was sent to {to}.")


HANDLERS = [overview, usage, usage_csv, audit_page, settings, settings_save, smtp_test]
"""The admin site-wide pages' route handlers."""
