"""The admin console: the operators' pages under ``/manage``, for users with role ``admin``.

One router, nested in the console's (so the same sessions, CSRF check, layout and
templates), whose guard checks the role on the server for every route: an anonymous visitor
is sent to the sign-in page, a signed-in ``user`` gets 403. Pages: Overview, Accounts (search,
and per account its money, keys, users, calls and ledger, with the actions), Groups,
Channels (switches and a test request), Codes, Usage (with CSV), Audit log and Settings
(stored in the database). What the actions do is in :mod:`tokone.plugins.console.admin_ops`;
each is written to the audit log.
"""

from __future__ import annotations

import asyncio
import csv
import io
import smtplib
from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.response import Stream
from sqlmodel import Session
from tokone.core.domain import audit, users
from tokone.core.domain.accounts import get_account
from tokone.core.domain.codes import list_codes
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount
from tokone.core.domain.usage_report import UsageFilter, usage_totals
from tokone.plugins.console import admin_ops, queries
from tokone.plugins.console.charts import bar_chart
from tokone.plugins.console.mail import send_mail
from tokone.plugins.console.pages import Console, _cell, _day_range, when

PREFIX = "/manage"
ADMIN_NAV = (
    (PREFIX, "Overview"),
    (f"{PREFIX}/accounts", "Users & accounts"),
    (f"{PREFIX}/groups", "Groups"),
    (f"{PREFIX}/channels", "Channels"),
    (f"{PREFIX}/codes", "Codes"),
    (f"{PREFIX}/usage", "Usage"),
    (f"{PREFIX}/audit", "Audit log"),
    (f"{PREFIX}/settings", "Settings"),
)
USAGE_FILTERS = ("since", "until", "account", "channel", "key", "model")


class NotSignedIn(Exception):
    """An admin URL was asked for without a session."""


class NotAdmin(Exception):
    """An admin URL was asked for by a user without the admin role."""


class AdminPages:
    """The admin handlers, bound to one console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.gateway = console.gateway

    def actor(self, request: Request[Any, Any, Any]) -> admin_ops.Actor:
        """The signed-in admin (set by the guard) and their address."""
        return admin_ops.Actor(request.state.admin, request.client.host if request.client else "")

    def page(
        self, request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any
    ) -> Response[str]:
        """An admin page: the console layout with the admin sub-navigation."""
        return self.console.render(
            request, template, request.state.admin, status, admin_nav=ADMIN_NAV, **context
        )

    # -- data ---------------------------------------------------------------------------

    def overview_data(self) -> dict[str, Any]:
        """The overview, with its charts."""
        data = admin_ops.overview(self.gateway)
        series = data.pop("series")
        money = self.console.env.filters["money"]
        data["spend_chart"] = bar_chart(
            [(d, c) for d, _, c in series], title="Spend per day, last 30 days", fmt=money
        )
        data["requests_chart"] = bar_chart(
            [(d, n) for d, n, _ in series], title="Requests per day, last 30 days"
        )
        return data

    def usage_filter(self, filters: dict[str, str]) -> tuple[queries.CallFilter, UsageFilter]:
        """The usage filters of a query string, for the calls and for the totals."""
        since, until = _day_range(filters.get("since", ""), filters.get("until", ""))
        account_id = None
        name = filters.get("account", "").strip() or None
        if name:
            with Session(self.gateway.engine) as session:
                account_id = get_account(session, name).id
        key_text = filters.get("key", "").strip()
        if key_text and not key_text.isdigit():
            raise AccountError("key must be a key id")
        key_id = int(key_text) if key_text else None
        model = filters.get("model", "").strip() or None
        channel = filters.get("channel", "").strip() or None
        return (
            queries.CallFilter(account_id, key_id, model, since, until, channel),
            UsageFilter(name, key_id, model, since, until, channel),
        )

    async def usage_data(self, filters: dict[str, str], page: int) -> dict[str, Any]:
        """One page of every account's calls, the totals and the daily chart (the three
        queries run at once, each on its own connection)."""
        engine = self.gateway.engine
        wanted, report_filter = await self.console.run(self.usage_filter, filters)
        size = admin_ops.PAGE_SIZE
        totals, series, calls = await asyncio.gather(
            self.console.run(usage_totals, engine, report_filter),
            self.console.run(queries.daily, engine, wanted, 30),
            self.console.run(queries.calls, engine, wanted, size, (page - 1) * size),
        )
        money = self.console.env.filters["money"]
        names = await self.console.run(
            admin_ops.account_names, self.gateway, {c["account_id"] for c in calls}
        )
        return {
            "filters": {k: filters.get(k, "") for k in USAGE_FILTERS},
            "calls": calls,
            "names": names,
            "page": page,
            "pages": max(1, -(-totals.requests // admin_ops.PAGE_SIZE)),
            "totals": totals,
            "channels": [p.name for p in self.gateway.config.providers],
            "spend_chart": bar_chart(
                [(d, c) for d, _, c in series], title="Spend per day", fmt=money
            ),
            "requests_chart": bar_chart([(d, n) for d, n, _ in series], title="Requests per day"),
        }

    def reset_link(self, request: Request[Any, Any, Any]) -> Any:
        """A function making a user's password-reset link: mailed when SMTP password reset
        is on, else returned in the message (shown once, to the admin)."""
        console = self.console
        base = console.base_url(request)

        def make(user: Any) -> str:
            if console.settings.smtp.password_reset:
                console.send_reset(user.email, base)
                return f"A password-reset link was mailed to {user.email}."
            token = users.make_token(console.link_secret, "reset", user, 3600)
            return (
                f"Give {user.email} this password-reset link (it works for an hour, once): "
                f"{base}/reset?token={token}"
            )

        return make

    # -- handlers -----------------------------------------------------------------------

    def handlers(self) -> list[Any]:
        """Every admin route handler."""
        admin = self
        console = self.console
        gateway = self.gateway

        async def account_page(
            request: Request[Any, Any, Any],
            account_id: int,
            status: int = 200,
            **extra: Any,
        ) -> Response[Any]:
            try:
                data = await console.run(admin_ops.account_detail, gateway, account_id)
            except AccountError as exc:
                return admin.page(
                    request, "error.html", exc.status, title="Not found", error=str(exc)
                )
            return admin.page(
                request,
                "admin_account.html",
                status,
                title=f"Account {data['account'].name}",
                **data,
                **extra,
            )

        @get("/", include_in_schema=False)
        async def overview(request: Request[Any, Any, Any]) -> Response[Any]:
            """Totals, charts, channels not in service, low balances."""
            data = await console.run(admin.overview_data)
            return admin.page(request, "admin_overview.html", title="Admin overview", **data)

        @get("/accounts", include_in_schema=False)
        async def accounts(
            request: Request[Any, Any, Any], q: str = "", page: int = 1
        ) -> Response[Any]:
            """Accounts by name or user e-mail, paginated."""
            data = await console.run(admin_ops.search_accounts, gateway, q, max(page, 1))
            return admin.page(
                request,
                "admin_accounts.html",
                title="Users & accounts",
                groups=await console.run(admin_ops.config_groups_all, gateway),
                **data,
            )

        @post("/users", include_in_schema=False, status_code=200)
        async def user_create(request: Request[Any, Any, Any]) -> Response[Any]:
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
            return await account_page(request, user.account_id, message=f"Created. {message}")

        @get("/accounts/{account_id:int}", include_in_schema=False)
        async def account(request: Request[Any, Any, Any], account_id: int) -> Response[Any]:
            """One account: money, group, keys, users, calls, ledger, and the actions."""
            return await account_page(request, account_id)

        @post("/accounts/{account_id:int}/{action:str}", include_in_schema=False, status_code=200)
        async def account_action(
            request: Request[Any, Any, Any], account_id: int, action: str
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
                    message = await console.run(
                        admin_ops.override_action, gateway, actor, account_id, form
                    )
                elif action == "group":
                    message = await console.run(
                        admin_ops.group_action, gateway, actor, account_id, form
                    )
                elif action == "budget" and console.features.limits:
                    message = await console.run(
                        admin_ops.budget_action, gateway, actor, account_id, form
                    )
                else:
                    raise AccountError(f"unknown action {action!r}", 404)
            except AccountError as exc:
                return await account_page(request, account_id, exc.status, error=str(exc))
            return await account_page(request, account_id, message=message)

        @post("/users/{user_id:int}/{action:str}", include_in_schema=False, status_code=200)
        async def user_action(
            request: Request[Any, Any, Any], user_id: int, action: str
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
                return await account_page(request, found.account_id, exc.status, error=str(exc))
            return await account_page(request, account_id, message=message)

        @post("/keys/{key_id:int}/{action:str}", include_in_schema=False, status_code=200)
        async def key_action(
            request: Request[Any, Any, Any], key_id: int, action: str
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
                return admin.page(
                    request, "error.html", exc.status, title="Refused", error=str(exc)
                )
            return await account_page(request, account_id, message=f"Key {key_id}: {action}d.")

        async def groups_page(
            request: Request[Any, Any, Any], status: int = 200, **extra: Any
        ) -> Response[Any]:
            rows = await console.run(admin_ops.groups_data, gateway)
            return admin.page(
                request, "admin_groups.html", status, title="Groups", groups=rows, **extra
            )

        @get("/groups", include_in_schema=False)
        async def groups(request: Request[Any, Any, Any]) -> Response[Any]:
            """Groups, multipliers and account counts; create; re-price."""
            return await groups_page(request)

        @post("/groups", include_in_schema=False, status_code=200)
        async def group_create(request: Request[Any, Any, Any]) -> Response[Any]:
            """Create a group."""
            form = await console.form(request)
            try:
                message = await console.run(
                    admin_ops.group_create, gateway, admin.actor(request), form
                )
            except AccountError as exc:
                return await groups_page(request, exc.status, error=str(exc))
            return await groups_page(request, message=message)

        @post("/groups/{name:str}", include_in_schema=False, status_code=200)
        async def group_set(request: Request[Any, Any, Any], name: str) -> Response[Any]:
            """Re-price a group."""
            form = await console.form(request)
            try:
                message = await console.run(
                    admin_ops.group_set, gateway, admin.actor(request), name, form
                )
            except AccountError as exc:
                return await groups_page(request, exc.status, error=str(exc))
            return await groups_page(request, message=message)

        async def channels_page(
            request: Request[Any, Any, Any], status: int = 200, **extra: Any
        ) -> Response[Any]:
            rows = await console.run(admin_ops.channels_data, gateway)
            return admin.page(
                request, "admin_channels.html", status, title="Channels", channels=rows, **extra
            )

        @get("/channels", include_in_schema=False)
        async def channels(request: Request[Any, Any, Any]) -> Response[Any]:
            """Every channel, its state in this process and its manual switch."""
            return await channels_page(request)

        @post("/channels/{name:str}/{action:str}", include_in_schema=False, status_code=200)
        async def channel_action(
            request: Request[Any, Any, Any], name: str, action: str
        ) -> Response[Any]:
            """Switch a channel off or on for every process, or send it a test request."""
            form = await console.form(request)
            try:
                if action == "test":
                    result = await admin_ops.channel_test(gateway, admin.actor(request), name)
                    return await channels_page(request, tested=result)
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
                return await channels_page(request, exc.status, error=str(exc))
            return await channels_page(request, message=message)

        async def codes_page(
            request: Request[Any, Any, Any], status: int = 200, **extra: Any
        ) -> Response[Any]:
            rows = await console.run(list_codes, gateway.engine)
            return admin.page(
                request,
                "admin_codes.html",
                status,
                title="Redemption codes",
                codes=rows[::-1],
                **extra,
            )

        @get("/codes", include_in_schema=False)
        async def codes_list(request: Request[Any, Any, Any]) -> Response[Any]:
            """Codes, used and unused, and the batch form."""
            return await codes_page(request)

        @post("/codes", include_in_schema=False, status_code=200)
        async def codes_create(request: Request[Any, Any, Any]) -> Response[Any]:
            """Create a batch; the codes are on this answer only (with a CSV download)."""
            form = await console.form(request)
            try:
                created, batch = await console.run(
                    admin_ops.codes_create, gateway, admin.actor(request), form
                )
            except AccountError as exc:
                return await codes_page(request, exc.status, error=str(exc))
            return admin.page(
                request,
                "admin_codes_shown.html",
                title="New codes",
                created=created,
                batch=batch,
                amount=form.get("amount", ""),
            )

        @post("/codes.csv", include_in_schema=False, status_code=200)
        async def codes_csv(request: Request[Any, Any, Any]) -> Response[Any]:
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
        async def code_disable(request: Request[Any, Any, Any], code_id: int) -> Response[Any]:
            """Disable an unused code."""
            try:
                message = await console.run(
                    admin_ops.code_disable, gateway, admin.actor(request), code_id
                )
            except AccountError as exc:
                return await codes_page(request, exc.status, error=str(exc))
            return await codes_page(request, message=message)

        @get("/usage", include_in_schema=False)
        async def usage(request: Request[Any, Any, Any], page: int = 1) -> Response[Any]:
            """Every account's calls: filters, totals, chart, pages."""
            filters = {k: request.query_params.get(k, "") for k in USAGE_FILTERS}
            try:
                data = await admin.usage_data(filters, max(page, 1))
            except AccountError as exc:
                data = await admin.usage_data({}, 1)
                return admin.page(
                    request, "admin_usage.html", exc.status, title="Usage", error=str(exc), **data
                )
            return admin.page(request, "admin_usage.html", title="Usage", **data)

        @get("/usage.csv", include_in_schema=False)
        async def usage_csv(request: Request[Any, Any, Any]) -> Response[Any]:
            """Every filtered call as CSV, streamed."""
            filters = {k: request.query_params.get(k, "") for k in USAGE_FILTERS}
            try:
                wanted, _ = await console.run(admin.usage_filter, filters)
            except AccountError as exc:
                return Response(str(exc), status_code=400, media_type="text/plain")
            names = await console.run(admin_ops.account_names, gateway)
            return Stream(
                admin_csv_lines(gateway.engine, wanted, names),
                media_type="text/csv; charset=utf-8",
                headers={
                    "content-disposition": 'attachment; filename="tokone-usage-all.csv"',
                    "cache-control": "no-store",
                },
            )

        @get("/audit", include_in_schema=False)
        async def audit_page(
            request: Request[Any, Any, Any],
            actor: str = "",
            action: str = "",
            target: str = "",
            page: int = 1,
        ) -> Response[Any]:
            """Who did what, when, from where, with the values before and after."""
            wanted = audit.AuditFilter(
                actor=actor.strip(), action=action.strip(), target=target.strip()
            )
            page = max(page, 1)
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
            request: Request[Any, Any, Any], status: int = 200, **extra: Any
        ) -> Response[Any]:
            rows = await console.run(admin_ops.settings_data, gateway, console.settings)
            return admin.page(
                request,
                "admin_settings.html",
                status,
                title="Settings",
                settings=rows,
                smtp_host=console.settings.smtp.host,
                **extra,
            )

        @get("/settings", include_in_schema=False)
        async def settings(request: Request[Any, Any, Any]) -> Response[Any]:
            """Sign-up policy, credit and e-mail domains (database over tokone.toml); SMTP."""
            return await settings_page(request)

        @post("/settings", include_in_schema=False, status_code=200)
        async def settings_save(request: Request[Any, Any, Any]) -> Response[Any]:
            """Store the settings (each change audited)."""
            form = await console.form(request)
            try:
                message = await console.run(
                    admin_ops.settings_save, gateway, admin.actor(request), form, console.settings
                )
            except AccountError as exc:
                return await settings_page(request, exc.status, error=str(exc))
            console.forget_live()
            return await settings_page(request, message=message)

        @post("/settings/smtp-test", include_in_schema=False, status_code=200)
        async def smtp_test(request: Request[Any, Any, Any]) -> Response[Any]:
            """Send a test message through the configured SMTP server."""
            form = await console.form(request)
            to = form.get("to", "").strip()
            if not console.settings.smtp.host:
                return await settings_page(request, 409, error="No SMTP server is configured.")
            try:
                await console.run(
                    send_mail,
                    console.settings.smtp,
                    to,
                    "TokOne test message",
                    "This is a test message from the TokOne admin console.\n",
                )
            except (OSError, smtplib.SMTPException) as exc:
                return await settings_page(request, 502, error=f"Sending failed: {exc}")
            await console.run(
                admin.actor(request).record,
                gateway,
                "smtp.test",
                f"email:{to}",
                None,
                {"sent": True},
            )
            return await settings_page(request, message=f"A test message was sent to {to}.")

        return [
            overview,
            accounts,
            user_create,
            account,
            account_action,
            user_action,
            key_action,
            groups,
            group_create,
            group_set,
            channels,
            channel_action,
            codes_list,
            codes_create,
            codes_csv,
            code_disable,
            usage,
            usage_csv,
            audit_page,
            settings,
            settings_save,
            smtp_test,
        ]

    def router(self) -> Router:
        """The admin routes under :data:`PREFIX`, every one behind the role guard."""
        console = self.console

        async def admin_only(
            connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
        ) -> None:
            """Let only a signed-in, active admin through (checked on every request)."""
            user = await console.current(connection)
            if user is None:
                raise NotSignedIn
            if user.role != "admin":
                raise NotAdmin
            connection.state.admin = user

        def not_signed_in(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
            return console.to_login(request)

        def not_admin(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
            return console.render(
                request,
                "error.html",
                None,
                403,
                title="Admins only",
                error="This page is for the operators of this gateway.",
            )

        return Router(
            path=PREFIX,
            route_handlers=self.handlers(),
            guards=[admin_only],
            exception_handlers={NotSignedIn: not_signed_in, NotAdmin: not_admin},
            include_in_schema=False,
        )


ADMIN_CSV_COLUMNS = (
    "time",
    "request_id",
    "account",
    "provider",
    "key_id",
    "key_prefix",
    "key_name",
    "model",
    "endpoint",
    "stream",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "estimated",
    "cost",
    "status",
    "latency_ms",
)


def admin_csv_lines(
    engine: Any, wanted: queries.CallFilter, names: dict[int, str]
) -> Iterator[str]:
    """The CSV header and one line per call of any account, produced as rows are read."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ADMIN_CSV_COLUMNS)
    for row in queries.iter_calls(engine, wanted):
        values = {
            **row,
            "account": names.get(row["account_id"], ""),
            "time": when(row["time"]),
            "cost": format_amount(row["cost"]),
        }
        writer.writerow([_cell(values[c]) for c in ADMIN_CSV_COLUMNS])
        if buffer.tell() > 16384:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
