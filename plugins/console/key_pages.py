"""The API-key pages: the account's keys and the form to make one, disable / enable /
revoke / rotate, one key's page and its limits form. Module-level handlers; the
:class:`~tokone.plugins.console.pages.Console` comes in as the ``console`` dependency."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect
from tokone.core.domain.errors import AccountError
from tokone.core.domain.key_ops import rotate_key, set_key_status
from tokone.plugins.console.pages import Console


@get("/keys", include_in_schema=False)
async def keys_page(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """The account's keys and the form to make one."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    data = await console.run(console.keys_data, user)
    return console.render(request, "keys.html", user, title="API keys", **data)


@post("/keys", include_in_schema=False, status_code=200)
async def keys_create(console: Console, request: Request[Any, Any, Any]) -> Response[Any]:
    """Make a key (shown once, on this response only)."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    form = await console.form(request)
    try:
        row, key = await console.run(console.new_key, user, form)
    except AccountError as exc:
        data = await console.run(console.keys_data, user)
        return console.render(
            request,
            "keys.html",
            user,
            400,
            title="API keys",
            error=str(exc),
            form=form,
            **data,
        )
    return console.render(
        request,
        "key_shown.html",
        user,
        title="Your new key",
        key=key,
        row=row,
        action="created",
        base_url=console.base_url(request),
    )


@post("/keys/{key_id:int}/{action:str}", include_in_schema=False, status_code=303)
async def keys_action(
    console: Console, request: Request[Any, Any, Any], key_id: int, action: str
) -> Response[Any]:
    """Disable, enable, revoke or rotate one of the account's keys."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    statuses = {"disable": "disabled", "enable": "enabled", "revoke": "revoked"}
    try:
        await console.run(console.own_key, user, key_id)
        if action == "rotate":
            row, key = await console.run(
                rotate_key,
                console.engine,
                console.gateway.hasher,
                console.gateway.config.server.key_prefix,
                key_id,
            )
            return console.render(
                request,
                "key_shown.html",
                user,
                title="Your rotated key",
                key=key,
                row=row,
                action="rotated",
                base_url=console.base_url(request),
            )
        if action not in statuses:
            raise AccountError(f"unknown action {action!r}", 404)
        await console.run(set_key_status, console.engine, key_id, statuses[action])
    except AccountError as exc:
        data = await console.run(console.keys_data, user)
        return console.render(
            request,
            "keys.html",
            user,
            exc.status,
            title="API keys",
            error=str(exc),
            **data,
        )
    return Redirect("/keys", status_code=303)


@get("/keys/{key_id:int}", include_in_schema=False)
async def key_page(console: Console, request: Request[Any, Any, Any], key_id: int) -> Response[Any]:
    """One key: its settings, its daily usage and its latest calls."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    try:
        data = await console.run(console.key_data, user, key_id)
    except AccountError as exc:
        return console.render(request, "error.html", user, 404, title="Not found", error=str(exc))
    return console.render(request, "key.html", user, **data)


@post("/keys/{key_id:int}/limits", include_in_schema=False, status_code=200)
async def key_limits(
    console: Console, request: Request[Any, Any, Any], key_id: int
) -> Response[Any]:
    """Change the key's spend limits and IP allow-list (all checked before any write)."""
    user = await console.current(request)
    if user is None:
        return console.to_login(request)
    form = await console.form(request)
    try:
        message = await console.run(console.change_key_limits, user, key_id, form)
    except AccountError as exc:
        try:
            data = await console.run(console.key_data, user, key_id)
        except AccountError:
            return console.render(
                request, "error.html", user, 404, title="Not found", error=str(exc)
            )
        return console.render(
            request, "key.html", user, exc.status, error=str(exc), form=form, **data
        )
    data = await console.run(console.key_data, user, key_id)
    return console.render(request, "key.html", user, message=message, **data)


HANDLERS = [keys_page, keys_create, key_limits, keys_action, key_page]
"""The key pages' route handlers, in the order the router mounts them."""
