"""The console's shared service: :class:`Console` (settings, templates, throttle, sessions,
the data behind each page and the actions on keys and money) and its router.

The pages themselves are module-level handlers grouped by family —
:mod:`~tokone.plugins.console.auth_pages` (sign in, sign up, verify, reset, sign out),
:mod:`~tokone.plugins.console.key_pages` (API keys) and
:mod:`~tokone.plugins.console.account_pages` (dashboard, usage, top up, pricing, models,
settings); :meth:`Console.router` mounts them with the console as their ``console``
dependency, the admin console's router and CSRF protection on every POST.

Every action on keys and money calls the domain operation the CLI and the admin API call
(`create_key`, `rotate_key`, `set_key_status`, `redeem`, ...); this module only checks that
the key belongs to the signed-in user's account, renders and redirects.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import time
from collections.abc import Iterator
from functools import partial
from importlib.resources import files
from typing import Any
from urllib.parse import quote

import msgspec
from jinja2 import Environment, FunctionLoader, select_autoescape
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from litestar import Request, Response, Router, get
from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection
from litestar.di import Provide
from litestar.exceptions import PermissionDeniedException
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.response import Redirect
from litestar.utils.scope.state import ScopeState
from sqlmodel import Session, select
from tokone.core.domain import codes, sessions, settings_store, users
from tokone.core.domain.alerts import list_deliveries
from tokone.core.domain.errors import AccountError
from tokone.core.domain.groups import known_groups
from tokone.core.domain.key_ops import create_key, list_keys
from tokone.core.domain.ledger_entries import add_entry
from tokone.core.domain.money import format_amount
from tokone.core.domain.spend_limits import set_key_limits
from tokone.core.domain.usage_report import UsageFilter, parse_time, usage_report
from tokone.core.gateway import Gateway
from tokone.core.model_names import model_name_problem
from tokone.core.store.tables import Account, ApiKey, RedemptionCode, User
from tokone.core.types import Principal
from tokone.plugins.console import hookspecs as console_hookspecs
from tokone.plugins.console import queries
from tokone.plugins.console.charts import bar_chart
from tokone.plugins.console.limit_forms import (
    Features,
    key_limit_changes,
    limit_view,
    save_alerts,
    wants_limits,
)
from tokone.plugins.console.mail import send_mail
from tokone.plugins.console.settings import ConsoleConfig

SESSION_COOKIE = "tokone_session"
CSRF_COOKIE = "tokone_csrf"
PAGE_SIZE = 50
LIVE_SECONDS = 1.0
"""How long the database's settings overrides are kept before being read again."""
_STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript"}

NAV = (
    ("/", "Dashboard"),
    ("/keys", "API keys"),
    ("/usage", "Usage"),
    ("/topup", "Top up"),
    ("/prices", "Pricing"),
    ("/models", "Models & endpoints"),
    ("/settings", "Settings"),
)


def _template_source(name: str) -> str:
    return files("tokone.plugins.console").joinpath("templates", name).read_text("utf-8")


MAX_ID = 2**53
"""The largest row id a filter accepts (the admin API's `MAX_INTEGER` too)."""
MAX_PAGE = 1_000_000
"""The highest page number a listing serves (a larger one shows that page: its SQL offset
must stay an integer the database takes)."""


def page_number(page: int) -> int:
    """A `?page=` number brought into 1..MAX_PAGE."""
    return min(max(page, 1), MAX_PAGE)


def key_id_filter(text: str) -> int | None:
    """The `?key=` filter of a usage page: a key id, or None when empty (AccountError 400
    for anything else, a number past any id included)."""
    text = text.strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit() and int(text) <= MAX_ID):
        raise AccountError("key must be a key id")
    return int(text)


def money(micro: int | None) -> str:
    """Micro-units as an amount: two decimals at least, six at most, no trailing zeros."""
    text = format_amount(int(micro or 0))
    whole, frac = text.split(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def when(moment: float | None) -> str:
    """A Unix time as `YYYY-MM-DD HH:MM:SS` UTC ("never" for None)."""
    if moment is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))


def make_environment() -> Environment:
    """The Jinja environment: templates from the package, HTML always autoescaped."""
    env = Environment(
        loader=FunctionLoader(_template_source),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = money
    env.filters["when"] = when
    env.filters["day"] = lambda t: (
        "never" if t is None else time.strftime("%Y-%m-%d", time.gmtime(t))
    )
    return env


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else `/` (no `//host`, scheme or backslash)."""
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 or c.isspace() for c in target)
    ):
        return "/"
    return target


def _principal(user: User, account: Account) -> Principal:
    """The user's account as a key-less principal, for the pricing helper."""
    assert account.id is not None
    return Principal(
        key_id=0,
        account_id=account.id,
        account_name=account.name,
        group=account.group,
        multiplier_override=account.multiplier_override,
    )


def _day_range(since: str, until: str) -> tuple[float | None, float | None]:
    """Form dates (inclusive, UTC) as a [since, until) range; a plain date's `until` is the
    end of that day."""
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    if end is not None and len(until.strip()) == 10:
        end += queries.DAY
    return start, end


class Console:
    """The console bound to one gateway: its settings, templates, throttle and page data."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.engine = gateway.engine
        self.settings: ConsoleConfig = gateway.plugin_config("console") or ConsoleConfig()
        self.env = make_environment()
        self.features = Features.of(gateway)
        self._live, self._live_at = self.settings, -LIVE_SECONDS
        caller = getattr(gateway.hook, "console_topup_methods", None)
        if caller is None or not caller.has_spec():
            gateway.pm.add_hookspecs(console_hookspecs)
        storage = gateway.config.rate_limits.storage
        self.limiter = MovingWindowRateLimiter(
            storage_from_string("memory://" if storage.startswith("memory://") else storage)
        )
        self.per_email = RateLimitItemPerMinute(self.settings.login_attempts_per_minute)
        self.per_ip = RateLimitItemPerMinute(self.settings.login_attempts_per_minute_per_ip)
        self.csrf_secret = hmac.new(
            gateway.config.server.secret.encode(), b"tokone-console-csrf", "sha256"
        ).hexdigest()
        self.link_secret = hmac.new(
            gateway.config.server.secret.encode(), b"tokone-console-links", "sha256"
        ).hexdigest()

    # -- helpers -------------------------------------------------------------------------

    def live(self) -> ConsoleConfig:
        """The settings with the operators' database overrides applied (Admin → Settings),
        re-read at most once a second so every process sees a change within about that."""
        now = time.monotonic()
        if now - self._live_at >= LIVE_SECONDS:
            stored = settings_store.stored_values(self.engine)
            overrides = {
                name.removeprefix("console."): value
                for name, value in stored.items()
                if name.startswith("console.")
            }
            self._live = msgspec.structs.replace(self.settings, **overrides)
            self._live_at = now
        return self._live

    def forget_live(self) -> None:
        """Read the settings overrides again on next use (this process just changed them)."""
        self._live_at = -LIVE_SECONDS

    async def run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Call a blocking (database) function off the event loop."""
        return await asyncio.to_thread(partial(function, *args, **kwargs))

    async def current(self, request: ASGIConnection[Any, Any, Any, Any]) -> User | None:
        """The signed-in user of this request, or None."""
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token:
            return None
        user: User | None = await self.run(sessions.resolve, self.engine, token)
        return user

    def secure(self, request: Request[Any, Any, Any]) -> bool:
        """Whether cookies get the Secure flag."""
        return self.settings.secure_cookies or request.url.scheme == "https"

    def base_url(self, request: Request[Any, Any, Any]) -> str:
        """This gateway's public base URL (no trailing slash)."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def render(
        self,
        request: Request[Any, Any, Any],
        template: str,
        user: User | None,
        status: int = 200,
        **context: Any,
    ) -> Response[str]:
        """A page: the template with the user, the nav and the CSRF token."""
        token = ScopeState.from_scope(request.scope).csrf_token
        html = self.env.get_template(template).render(
            user=user,
            nav=NAV,
            path=request.url.path,
            csrf_token=token if isinstance(token, str) else "",
            signup=self.live().signup,
            password_reset=self.settings.smtp.password_reset,
            features=self.features,
            **context,
        )
        return Response(
            html,
            status_code=status,
            media_type="text/html",
            headers={
                "cache-control": "no-store",
                "x-frame-options": "DENY",
                "referrer-policy": "same-origin",
                "content-security-policy": (
                    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                    "script-src 'self'; frame-ancestors 'none'; form-action 'self'"
                ),
            },
        )

    def to_login(self, request: Request[Any, Any, Any]) -> Redirect:
        """Send an anonymous visitor to the sign-in page, coming back here afterwards."""
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = "" if target == "/" else f"?next={quote(target, safe='/')}"
        return Redirect(f"/login{query}", status_code=303)

    async def form(self, request: Request[Any, Any, Any]) -> dict[str, str]:
        """The posted form as plain strings."""
        data = await request.form()
        return {k: v if isinstance(v, str) else "" for k, v in data.items()}

    def account(self, user: User) -> Account:
        """The user's account row."""
        with Session(self.engine) as session:
            account = session.get(Account, user.account_id)
        if account is None:
            raise AccountError("this user's account no longer exists", 404)
        return account

    def own_key(self, user: User, key_id: int) -> ApiKey:
        """Key `key_id` if it belongs to the user's account, else AccountError 404."""
        with Session(self.engine) as session:
            row = session.get(ApiKey, key_id)
        if row is None or row.account_id != user.account_id:
            raise AccountError(f"no key with id {key_id}", 404)
        return row

    def throttled(self, email: str, ip: str) -> bool:
        """Count a sign-in attempt; True when this e-mail or address has made too many."""
        by_email = self.limiter.hit(self.per_email, "console-login-email", email)
        by_ip = self.limiter.hit(self.per_ip, "console-login-ip", ip)
        return not (by_email and by_ip)

    def start_session(self, request: Request[Any, Any, Any], user: User, target: str) -> Redirect:
        """Sign `user` in and redirect to `target`, setting the session cookie."""
        assert user.id is not None
        token = sessions.create_session(
            self.engine,
            user.id,
            self.settings.session_days * 86400,
            ip=request.client.host if request.client else "",
            user_agent=request.headers.get("user-agent", ""),
        )
        response = Redirect(safe_next(target), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=int(self.settings.session_days * 86400),
            path="/",
            httponly=True,
            samesite="lax",
            secure=self.secure(request),
        )
        return response

    # -- data for pages ------------------------------------------------------------------

    def dashboard_data(self, user: User) -> dict[str, Any]:
        """Balance, spend and requests today / 7 / 30 days, the daily series, the last calls."""
        account = self.account(user)
        assert account.id is not None
        now = time.time()
        today = now - now % queries.DAY
        periods = {}
        for label, since in (
            ("Today", today),
            ("7 days", now - 7 * 86400),
            ("30 days", now - 30 * 86400),
        ):
            totals = usage_report(
                self.engine, UsageFilter(account=account.name, since=since)
            ).totals
            periods[label] = totals
        wanted = queries.CallFilter(account.id)
        series = queries.daily(self.engine, wanted, 30)
        return {
            "account": account,
            "periods": periods,
            "spend_chart": bar_chart(
                [(d, c) for d, _, c in series], title="Spend per day, last 30 days", fmt=money
            ),
            "requests_chart": bar_chart(
                [(d, n) for d, n, _ in series], title="Requests per day, last 30 days"
            ),
            "calls": queries.calls(self.engine, wanted, 10),
        }

    def keys_data(self, user: User) -> dict[str, Any]:
        """The account's keys with their totals."""
        account = self.account(user)
        assert account.id is not None
        stats = queries.key_stats(self.engine, account.id)
        keys = [key for key, _ in list_keys(self.engine, account.name)]
        return {
            "keys": [(key, stats.get(key.id or 0, queries.KeyStats())) for key in keys],
            "limits": {key.id: limit_view(self.engine, key, self.features) for key in keys},
            "models": self.configured_models(),
        }

    def key_data(self, user: User, key_id: int) -> dict[str, Any]:
        """One key's page: its settings, limits and spend, daily usage and latest calls."""
        row = self.own_key(user, key_id)
        wanted = queries.CallFilter(user.account_id, key_id=key_id)
        series = queries.daily(self.engine, wanted, 30)
        return {
            "title": f"Key {row.prefix}",
            "row": row,
            "limit": limit_view(self.engine, row, self.features),
            "stats": queries.key_stats(self.engine, user.account_id).get(
                key_id, queries.KeyStats()
            ),
            "calls": queries.calls(self.engine, wanted, 20),
            "spend_chart": bar_chart(
                [(d, c) for d, _, c in series], title="Spend per day, last 30 days", fmt=money
            ),
        }

    def change_key_limits(self, user: User, key_id: int, form: dict[str, str]) -> str:
        """Replace one of the account's keys' limits and IP allow-list from its page's form."""
        self.own_key(user, key_id)
        changes = key_limit_changes(form, self.features)
        if not changes:
            raise AccountError("spend limits and IP allow-lists are not enabled here", 404)
        set_key_limits(self.engine, key_id, **changes)
        return "Saved. The new limits apply within a second."

    def settings_data(self, user: User) -> dict[str, Any]:
        """The settings page's context: the password rule and, with alerts, the account's
        alert settings and its newest deliveries."""
        data: dict[str, Any] = {
            "title": "Settings",
            "min_length": self.settings.min_password_length,
        }
        if self.features.alerts:
            account = self.account(user)
            data["account"] = account
            own = {account.alert_webhook, account.alert_email} - {""}
            data["deliveries"] = [
                # the operator's default destination (and its errors) are not the user's to see
                d if d["target"] in own else {**d, "target": "", "last_error": ""}
                for d in list_deliveries(self.engine, account.name, 20)
            ]
        return data

    def configured_models(self) -> list[str]:
        """Model names (and `*` patterns) the gateway's providers serve."""
        names = {m for provider in self.gateway.config.providers for m in provider.models}
        return sorted(names)

    # -- actions -------------------------------------------------------------------------

    def sign_up(self, form: dict[str, str], base_url: str) -> User:
        """Create a user from the sign-up form, per the sign-up policy; with e-mail
        verification on, mail them the confirmation link (the credit waits for it)."""
        live = self.live()
        policy = live.signup
        if policy == "closed":
            raise AccountError("sign-up is closed on this gateway; ask its operator", 403)
        if form.get("password", "") != form.get("password2", ""):
            raise AccountError("the two passwords differ")
        invite = form.get("invite", "").strip()
        if policy == "invite":
            if not invite:
                raise AccountError("sign-up needs an invitation code here")
            self.check_invite(invite)
        user = users.create_user(
            self.engine,
            form.get("email", ""),
            form.get("password", ""),
            policy=self.settings.password_policy,
            display_name=form.get("display_name", ""),
            group=self.settings.signup_group,
            known_groups=known_groups(self.engine, self.gateway.config.groups),
            credit=0 if self.settings.smtp.verify_email else live.credit_micro,
            allowed_domains=live.allowed_email_domains,
            verified=not self.settings.smtp.verify_email,
        )
        if policy == "invite":
            try:
                codes.redeem(self.engine, self.gateway.hasher, invite, user.account_id)
            except AccountError:
                users.set_status(self.engine, user.email, "disabled")
                raise AccountError("this invitation code has just been used") from None
        if self.settings.smtp.verify_email:
            token = users.make_token(self.link_secret, "verify", user, 7 * 86400)
            send_mail(
                self.settings.smtp,
                user.email,
                "Confirm your e-mail for TokOne",
                f"Open this link to confirm your e-mail and sign in:\n\n"
                f"{base_url}/verify?token={token}\n\nThe link works for 7 days. If you did "
                "not sign up, ignore this message.\n",
            )
        return user

    def verify(self, token: str) -> User:
        """Confirm the e-mail of a verification link; the first time, give the sign-up credit."""
        user = users.check_token(self.engine, self.link_secret, "verify", token)
        if user.status != "active":
            raise AccountError("this user is disabled", 403)
        assert user.id is not None
        credit = self.live().credit_micro
        if users.mark_verified(self.engine, user.id) and credit > 0:
            add_entry(
                self.engine,
                self.account(user).name,
                "topup",
                credit,
                "console",
                note="sign-up credit",
            )
        return user

    def send_reset(self, email: str, base_url: str) -> None:
        """Mail a password-reset link to `email` if it is an active user's."""
        with Session(self.engine) as session:
            user = session.exec(select(User).where(User.email == email)).first()
        if user is None or user.status != "active":
            return
        token = users.make_token(self.link_secret, "reset", user, 3600)
        send_mail(
            self.settings.smtp,
            user.email,
            "Reset your TokOne password",
            f"Open this link to set a new password:\n\n{base_url}/reset?token={token}\n\n"
            "The link works for an hour, once. If you did not ask for it, ignore this "
            "message; your password stays as it is.\n",
        )

    def reset_password(self, form: dict[str, str]) -> None:
        """Set the password of a valid reset link; every session of the user ends."""
        user = users.check_token(self.engine, self.link_secret, "reset", form.get("token", ""))
        if form.get("password", "") != form.get("password2", ""):
            raise AccountError("the two passwords differ")
        assert user.id is not None
        users.set_password(
            self.engine, user.id, form.get("password", ""), self.settings.password_policy
        )

    def check_invite(self, code: str) -> None:
        """Raise AccountError unless `code` is an unused redemption code."""
        code_hash = self.gateway.hasher.hash(codes.normalise_code(code))
        with Session(self.engine) as session:
            row = session.exec(
                select(RedemptionCode).where(RedemptionCode.code_hash == code_hash)
            ).first()
        if row is None or row.redeemed_at is not None:
            raise AccountError("unknown or already used invitation code")

    def new_key(self, user: User, form: dict[str, str]) -> tuple[ApiKey, str]:
        """Create a key from the form (name, models, expiry, spend limits, IP allow-list) via
        the shared operations; every field is checked first, so a refused form makes no key."""
        name = form.get("name", "").strip()
        if len(name) > 100:
            raise AccountError("a key name must be at most 100 characters")
        models = [m.strip() for m in form.get("models", "").replace("\n", ",").split(",")]
        models = [m for m in models if m]
        for model in models:
            problem = model_name_problem(model.rstrip("*") or "x", slashes=True)
            if problem:
                raise AccountError(f"model {model!r} {problem}")
        days_text = form.get("expires_days", "").strip()
        days: float | None = None
        if days_text:
            try:
                days = float(days_text)
            except ValueError:
                raise AccountError("expiry must be a number of days") from None
            if not 0 < days <= 3650:
                raise AccountError("expiry must be from 1 to 3650 days")
        limits = key_limit_changes(form, self.features)  # checked before the key exists
        row, key = create_key(
            self.engine,
            self.gateway.hasher,
            self.gateway.config.server.key_prefix,
            self.account(user).name,
            name=name,
            models=models,
            expires_in_days=days,
        )
        if wants_limits(limits):
            assert row.id is not None
            row = set_key_limits(self.engine, row.id, **limits)
        return row, key

    def call_filter(self, user: User, filters: dict[str, str]) -> queries.CallFilter:
        """The usage filters of a query string, for the user's account."""
        since, until = _day_range(filters.get("since", ""), filters.get("until", ""))
        wanted = key_id_filter(filters.get("key", ""))
        key_id = None if wanted is None else self.own_key(user, wanted).id
        return queries.CallFilter(
            user.account_id, key_id, filters.get("model", "").strip() or None, since, until
        )

    def usage_data(self, user: User, filters: dict[str, str], page: int) -> dict[str, Any]:
        """Calls of one page, totals and the daily chart for the filters."""
        wanted = self.call_filter(user, filters)
        account = self.account(user)
        totals = usage_report(
            self.engine,
            UsageFilter(account.name, wanted.key_id, wanted.model, wanted.since, wanted.until),
        ).totals
        series = queries.daily(self.engine, wanted, 30)
        assert account.id is not None
        return {
            "filters": {k: filters.get(k, "") for k in ("since", "until", "key", "model")},
            "calls": queries.calls(self.engine, wanted, PAGE_SIZE, (page - 1) * PAGE_SIZE),
            "page": page,
            "pages": max(1, -(-totals.requests // PAGE_SIZE)),
            "totals": totals,
            "keys": [key for key, _ in list_keys(self.engine, account.name)],
            "models": queries.account_models(self.engine, account.id),
            "spend_chart": bar_chart(
                [(d, c) for d, _, c in series], title="Spend per day", fmt=money
            ),
            "requests_chart": bar_chart([(d, n) for d, n, _ in series], title="Requests per day"),
        }

    def topup_data(self, user: User) -> dict[str, Any]:
        """The balance and the money entries of the user's account."""
        account = self.account(user)
        assert account.id is not None
        found = self.gateway.hook.console_topup_methods(
            gateway=self.gateway, user=user, account=account
        )
        return {
            "account": account,
            "entries": queries.money_entries(self.engine, account.id),
            "methods": [method for methods in found for method in methods or ()],
        }

    def save_settings(self, user: User, what: str, form: dict[str, str], token: str) -> str:
        """Apply a settings form; return the message to show."""
        assert user.id is not None
        if what == "profile":
            users.update_profile(
                self.engine,
                user.id,
                display_name=form.get("display_name", ""),
                email=form.get("email") or None,
            )
            return "Saved."
        if what == "password":
            if not users.verify_password(user.password_hash, form.get("current", "")):
                raise AccountError("the current password is wrong")
            if form.get("password", "") != form.get("password2", ""):
                raise AccountError("the two new passwords differ")
            users.set_password(
                self.engine,
                user.id,
                form.get("password", ""),
                self.settings.password_policy,
                keep_session=sessions.token_hash(token) if token else None,
            )
            return "Password changed. Your other sessions have been signed out."
        if what == "alerts" and self.features.alerts:
            save_alerts(self.engine, self.account(user).name, form)
            return "Alert settings saved."
        raise AccountError(f"unknown settings form {what!r}", 404)

    def router(self) -> Router:
        """All console routes under one router with CSRF protection on every POST."""
        csrf = CSRFConfig(
            secret=self.csrf_secret,
            cookie_name=CSRF_COOKIE,
            cookie_secure=self.settings.secure_cookies,
            cookie_httponly=True,
            cookie_samesite="lax",
            header_name="x-csrftoken",
        )
        console = self

        def csrf_refused(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
            """A POST without a valid CSRF token: 403 with a page saying to reload."""
            return console.render(
                request,
                "error.html",
                None,
                403,
                title="Refused",
                error="This form has expired or did not come from this site. Reload the page "
                "and try again.",
            )

        def provide_console() -> Console:
            """This console, for the handlers' ``console`` parameter."""
            return console

        # the page modules import this one (for Console and the helpers)
        from tokone.plugins.console import account_pages, auth_pages, key_pages
        from tokone.plugins.console.admin_pages import AdminPages

        # a plain function, not a bound method: Litestar deep-copies a router's handlers
        return Router(
            path="/",
            route_handlers=[
                *account_pages.HANDLERS,
                *auth_pages.HANDLERS,
                *key_pages.HANDLERS,
                static,
                AdminPages(self).router(),
            ],
            dependencies={"console": Provide(provide_console, sync_to_thread=False)},
            middleware=[DefineMiddleware(CSRFMiddleware, config=csrf)],
            exception_handlers={PermissionDeniedException: csrf_refused},
            include_in_schema=False,
        )


@get("/console/static/{name:str}", include_in_schema=False)
async def static(name: str) -> Response[bytes]:
    """The stylesheet and the script (package data, no CDN)."""
    if name not in _STATIC:
        return Response(b"not found", status_code=404, media_type="text/plain")
    body = files("tokone.plugins.console").joinpath("static", name).read_bytes()
    return Response(
        body, media_type=_STATIC[name], headers={"cache-control": "public, max-age=3600"}
    )


def calls_csv(
    engine: Any,
    wanted: queries.CallFilter,
    columns: tuple[str, ...],
    account_names: dict[int, str] | None = None,
) -> Iterator[str]:
    """The CSV of the calls `wanted` selects: a header of `columns`, then one line per call,
    produced as the rows are read (in pieces of about 16 KB). `account_names` fills an
    ``account`` column (the admin export)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in queries.iter_calls(engine, wanted):
        values = {**row, "time": when(row["time"]), "cost": format_amount(row["cost"])}
        if account_names is not None:
            values["account"] = account_names.get(row["account_id"], "")
        # a spreadsheet must not run a cell as a formula (names are user text)
        writer.writerow([_cell(values[c]) for c in columns])
        if buffer.tell() > 16384:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
