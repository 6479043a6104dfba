"""The admin console: the operators' pages under ``/manage``, for users with role ``admin``.

One router, nested in the console's (so the same sessions, CSRF check, layout and
templates), whose guard checks the role on the server for every route: an anonymous visitor
is sent to the sign-in page, a signed-in ``user`` gets 403. Pages: Overview, Accounts (search,
and per account its money, keys, users, calls and ledger, with the actions), Groups,
Channels (switches and a test request), Codes, Usage (with CSV), Audit log and Settings
(stored in the database). What the actions do is in :mod:`tokone.plugins.console.admin_ops`;
each is written to the audit log.

This module keeps :class:`AdminPages` (the admin layout, the data behind the overview and
usage pages, reset links) and the router; the handlers are module-level, by family, in
:mod:`~tokone.plugins.console.admin_account_pages` (accounts, users, keys),
:mod:`~tokone.plugins.console.admin_catalog_pages` (groups, channels, codes) and
:mod:`~tokone.plugins.console.admin_site_pages` (overview, usage, audit log, settings), and
get ``admin``, ``console`` and ``gateway`` as dependencies the router provides.
"""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, Router
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.handlers import BaseRouteHandler
from sqlmodel import Session
from tokone.core.domain import users
from tokone.core.domain.accounts import get_account
from tokone.core.domain.usage_report import UsageFilter, usage_totals
from tokone.core.gateway import Gateway
from tokone.plugins.console import admin_ops, queries
from tokone.plugins.console.charts import bar_chart
from tokone.plugins.console.pages import Console, _day_range, key_id_filter

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
    """The admin pages bound to one console: their layout and the data behind them."""

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
        key_id = key_id_filter(filters.get("key", ""))
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

        admin = self

        def provide_admin() -> AdminPages:
            """These admin pages, for the handlers' ``admin`` parameter."""
            return admin

        def provide_console() -> Console:
            """The console, for the handlers' ``console`` parameter."""
            return console

        def provide_gateway() -> Gateway:
            """The gateway, for the handlers' ``gateway`` parameter."""
            return admin.gateway

        # the page modules import this one (for AdminPages and the helpers)
        from tokone.plugins.console import (
            admin_account_pages,
            admin_catalog_pages,
            admin_site_pages,
        )

        return Router(
            path=PREFIX,
            route_handlers=[
                *admin_site_pages.HANDLERS,
                *admin_account_pages.HANDLERS,
                *admin_catalog_pages.HANDLERS,
            ],
            dependencies={
                "admin": Provide(provide_admin, sync_to_thread=False),
                "console": Provide(provide_console, sync_to_thread=False),
                "gateway": Provide(provide_gateway, sync_to_thread=False),
            },
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
