"""The account pages: the dashboard, usage (and its CSV export), top up, pricing, models
and settings. Module-level handlers; the :class:`~tokone.plugins.console.pages.Console`
comes in as the ``console`` dependency the console's router provides."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Stream
from tokone.core.domain import codes
from tokone.core.domain.errors import AccountError
from tokone.core.domain.key_ops import list_keys
from tokone.core.domain.prices import pricing_for
from tokone.plugins.console.pages import (
    SESSION_COOKIE,
    Console,
    _principal,
    calls_csv,
    money,
    page_number,
)


@get("/", include_in_schema=False)
async def home(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """The dashboard, or the sign-in page for a visitor."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    data = await console.run(console.dashboard_data, user)
    return console.render(request, "dashboard.html", user, title="Dashboard", **data)


@get("/usage", include_in_schema=False)
async def usage_page(
    console: Console,
    request: Request[Any, Any, Any],
    since: str = "",
    until: str = "",
    key: str = "",
    model: str = "",
    page: int = 1,
) -> Response[Any]:
    """The account's calls, filtered and paginated, with totals and a daily chart."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    filters = {"since": since, "until": until, "key": key, "model": model}
    try:
        data = await console.run(console.usage_data, user, filters, page_number(page))
    except AccountError as exc:
        data = await console.run(console.usage_data, user, {}, 1)
        return console.render(
            request, "usage.html", user, 400, title="Usage", error=str(exc), **data
        )
    return console.render(request, "usage.html", user, title="Usage", **data)


@get("/usage.csv", include_in_schema=False)
async def usage_csv(
    console: Console,
    request: Request[Any, Any, Any],
    since: str = "",
    until: str = "",
    key: str = "",
    model: str = "",
) -> Response[Any]:
    """The filtered calls as CSV, streamed (rows are read in batches)."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    try:
        wanted = console.call_filter(
            user, {"since": since, "until": until, "key": key, "model": model}
        )
    except AccountError as exc:
        return Response(str(exc), status_code=400, media_type="text/plain")
    return Stream(
        calls_csv(console.engine, wanted, CSV_COLUMNS),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": 'attachment; filename="tokone-usage.csv"',
            "cache-control": "no-store",
        },
    )


@get("/topup", include_in_schema=False)
async def topup_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Redeem a code; the account's top-ups, refunds and adjustments."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    return console.render(
        request,
        "topup.html",
        user,
        title="Top up",
        **await console.run(console.topup_data, user),
    )


@post("/topup/redeem", include_in_schema=False, status_code=200)
async def topup_redeem(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Redeem a code for the account (each code credits exactly once)."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    form = await console.form(request)
    try:
        amount, _balance = await console.run(
            codes.redeem,
            console.engine,
            console.gateway.hasher,
            form.get("code", ""),
            user.account_id,
        )
    except AccountError as exc:
        return console.render(
            request,
            "topup.html",
            user,
            400,
            title="Top up",
            error=str(exc).capitalize() + ".",
            **await console.run(console.topup_data, user),
        )
    return console.render(
        request,
        "topup.html",
        user,
        title="Top up",
        message=f"Redeemed: {money(amount)} added to your balance.",
        **await console.run(console.topup_data, user),
    )


@get("/prices", include_in_schema=False)
async def pricing_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Every model's prices as this user pays them."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    account = await console.run(console.account, user)
    gateway, principal = console.gateway, _principal(user, account)
    prices = await console.run(pricing_for, gateway.engine, gateway.config, principal)
    return console.render(request, "pricing.html", user, title="Pricing", prices=prices)


@get("/models", include_in_schema=False)
async def models_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Base URLs, endpoints, models and quick starts."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    keys = await console.run(
        list_keys, console.engine, (await console.run(console.account, user)).name
    )
    restricted = sorted({m for key, _ in keys for m in key.models.split(",") if m})
    models = console.configured_models()
    return console.render(
        request,
        "models.html",
        user,
        title="Models & endpoints",
        base_url=console.base_url(request),
        models=models,
        restricted=restricted,
        example=next((m for m in models if "*" not in m), "mock-1"),
    )


@get("/settings", include_in_schema=False)
async def settings_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Display name, e-mail, password and (with the alerts plugin) low-balance alerts."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    data = await console.run(console.settings_data, user)
    return console.render(request, "settings.html", user, **data)


@post("/settings/{what:str}", include_in_schema=False, status_code=200)
async def settings_save(
    console: Console, request: Request[Any, Any, Any], what: str
) -> Response[Any]:
    """Save the profile or the alert settings, or change the password (ending the
    other sessions)."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    form = await console.form(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    try:
        message = await console.run(console.save_settings, user, what, form, token)
    except AccountError as exc:
        data = await console.run(console.settings_data, user)
        kept = {k: v for k, v in form.items() if k.startswith("alert_")}  # no passwords
        return console.render(
            request, "settings.html", user, exc.status, error=str(exc), form=kept, **data
        )
    user = await console.current(request) or user
    data = await console.run(console.settings_data, user)
    return console.render(request, "settings.html", user, message=message, **data)


CSV_COLUMNS = (
    "time",
    "request_id",
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


HANDLERS = [
    home,
    usage_page,
    usage_csv,
    topup_page,
    topup_redeem,
    pricing_page,
    models_page,
    settings_page,
    settings_save,
]
"""The account pages' route handlers, in the order the router mounts them."""
