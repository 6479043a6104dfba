"""The sign-in pages: log in (throttled), sign up, confirm an e-mail, forgot / reset a
password, sign out. Module-level handlers; the :class:`~tokone.plugins.console.pages.Console`
comes in as the ``console`` dependency the console's router provides."""

from __future__ import annotations

import smtplib
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect
from tokone.core.domain import sessions, users
from tokone.core.domain.errors import AccountError
from tokone.plugins.console.pages import SESSION_COOKIE, Console, safe_next


@get("/login", include_in_schema=False)
async def login_page(
    console: Console, request: Request[Any, Any, Any], next: str = "/"
) -> Response[Any]:
    """The sign-in form."""
    user = await console.current(request)
    if user is not None:
        return Redirect(safe_next(next), status_code=303)
    return console.render(
        request, "login.html", None, title="Sign in", next=safe_next(next), email=""
    )


@post("/login", include_in_schema=False, status_code=303)
async def login(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Check the e-mail and password (throttled) and start a session."""
    form = await console.form(request)
    email = users.normalise_email(form.get("email", ""))
    password = form.get("password", "")
    target = safe_next(form.get("next"))
    ip = request.client.host if request.client else "unknown"

    def refuse(message: str, status: int) -> Response[Any]:
        return console.render(
            request,
            "login.html",
            None,
            status,
            title="Sign in",
            error=message,
            next=target,
            email=email,
        )

    if await console.run(console.throttled, email, ip):
        return refuse("Too many sign-in attempts. Wait a minute and try again.", 429)
    user = await console.run(users.authenticate, console.engine, email, password)
    if user is None:
        return refuse("Wrong e-mail or password.", 401)
    if user.status != "active":
        return refuse("This user is disabled. Ask the operator of this gateway.", 403)
    if console.settings.smtp.verify_email and user.email_verified_at is None:
        return refuse(f"Confirm your e-mail first: open the link we sent to {user.email}.", 403)
    return await console.run(console.start_session, request, user, target)


@get("/signup", include_in_schema=False)
async def signup_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """The sign-up form (or why sign-up is closed)."""
    return console.render(
        request,
        "signup.html",
        await console.current(request),
        title="Sign up",
        form={},
        credit=console.live().credit_micro,
        min_length=console.settings.min_password_length,
    )


@post("/signup", include_in_schema=False, status_code=303)
async def signup(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Create the user and their account (with the sign-up credit) and sign in."""
    form = await console.form(request)
    try:
        user = await console.run(console.sign_up, form, console.base_url(request))
    except AccountError as exc:
        form.pop("password", None)
        form.pop("password2", None)
        return console.render(
            request,
            "signup.html",
            None,
            400 if exc.status < 500 else 500,
            title="Sign up",
            error=str(exc),
            form=form,
            credit=console.live().credit_micro,
            min_length=console.settings.min_password_length,
        )
    if console.settings.smtp.verify_email:
        return console.render(
            request,
            "error.html",
            None,
            title="Check your inbox",
            message=f"We sent a link to {user.email}. Open it to confirm your e-mail and sign in.",
        )
    return await console.run(console.start_session, request, user, "/keys")


@get("/verify", include_in_schema=False)
async def verify(
    console: Console, request: Request[Any, Any, Any], token: str = ""
) -> Response[Any]:
    """Confirm an e-mail from the mailed link, credit the sign-up and sign in."""
    try:
        user = await console.run(console.verify, token)
    except AccountError as exc:
        return console.render(
            request,
            "error.html",
            None,
            400,
            title="Link expired",
            error=str(exc).capitalize() + ".",
        )
    return await console.run(console.start_session, request, user, "/keys")


@get("/forgot", include_in_schema=False)
async def forgot_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Ask for a password-reset link."""
    if not console.settings.smtp.password_reset:
        return console.render(
            request,
            "error.html",
            None,
            404,
            title="Not available",
            error="Password reset by e-mail is not enabled here.",
        )
    return console.render(request, "forgot.html", None, title="Reset your password")


@post("/forgot", include_in_schema=False, status_code=200)
async def forgot(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Mail a reset link if the e-mail belongs to an active user (same answer always)."""
    if not console.settings.smtp.password_reset:
        return console.render(
            request,
            "error.html",
            None,
            404,
            title="Not available",
            error="Password reset by e-mail is not enabled here.",
        )
    form = await console.form(request)
    email = users.normalise_email(form.get("email", ""))
    ip = request.client.host if request.client else "unknown"
    if await console.run(console.throttled, email, ip):
        return console.render(
            request,
            "forgot.html",
            None,
            429,
            title="Reset your password",
            error="Too many attempts. Wait a minute and try again.",
        )
    try:
        await console.run(console.send_reset, email, console.base_url(request))
    except (OSError, smtplib.SMTPException) as exc:
        console.gateway.log.error("console_mail_failed", error=str(exc))
        return console.render(
            request,
            "forgot.html",
            None,
            503,
            title="Reset your password",
            error="The e-mail could not be sent. Try again later.",
        )
    return console.render(
        request,
        "forgot.html",
        None,
        title="Reset your password",
        message="If that address has an account here, we sent it a link to set a new "
        "password. The link works for an hour.",
    )


@get("/reset", include_in_schema=False)
async def reset_page(
    console: Console, request: Request[Any, Any, Any], token: str = ""
) -> Response[Any]:
    """The new-password form of a mailed reset link."""
    try:
        await console.run(users.check_token, console.engine, console.link_secret, "reset", token)
    except AccountError as exc:
        return console.render(
            request,
            "error.html",
            None,
            400,
            title="Link expired",
            error=str(exc).capitalize() + ".",
        )
    return console.render(
        request,
        "reset.html",
        None,
        title="Set a new password",
        token=token,
        min_length=console.settings.min_password_length,
    )


@post("/reset", include_in_schema=False, status_code=200)
async def reset(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Set the new password (ending every session) and go to the sign-in page."""
    form = await console.form(request)
    try:
        await console.run(console.reset_password, form)
    except AccountError as exc:
        return console.render(
            request,
            "reset.html",
            None,
            400,
            title="Set a new password",
            error=str(exc),
            token=form.get("token", ""),
            min_length=console.settings.min_password_length,
        )
    return console.render(
        request,
        "login.html",
        None,
        title="Sign in",
        next="/",
        email="",
        message="Password changed. Sign in with it now.",
    )


@get("/logout", include_in_schema=False)
async def logout_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """A page with the sign-out button (signing out is a POST)."""
    user = await console.current(request)
    if user is None:
        return Redirect("/login", status_code=303)
    return console.render(request, "logout.html", user, title="Sign out")


@post("/logout", include_in_schema=False, status_code=303)
async def logout(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """End this browser's session."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        await console.run(sessions.end_session, console.engine, token)
    response = Redirect("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


HANDLERS = [
    login_page,
    login,
    signup_page,
    signup,
    verify,
    forgot_page,
    forgot,
    reset_page,
    reset,
    logout_page,
    logout,
]
"""The sign-in pages' route handlers, in the order the router mounts them."""
