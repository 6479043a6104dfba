"""Admin API for provider channels: their live health in this process, and the manual switch.

* ``GET /admin/providers``: every configured channel with its config (adapter, models,
  priority, weight) and its state as *this* process sees it: healthy, cooldown (until when),
  half-open, disabled (by an operator, with the reason) or disabled in config; consecutive
  and recent failures and the last error.
* ``POST /admin/providers/{name}/disable`` (optional JSON body ``{"reason": "..."}``) and
  ``POST /admin/providers/{name}/enable``: the switch is written to the database, so every
  process applies it within ``[plugins.health] refresh_seconds`` (this one at once), and
  it is written to the audit log (actor ``admin-api``). With no
  plugin keeping channel health (`health` disabled) nothing would obey it, so it is refused
  with 409 and the state shows ``unmonitored``.

Guarded by ``[server] admin_keys`` (``Authorization: Bearer <admin key>``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from tokone.core.domain import audit
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.health import (
    SWITCHES_NOT_OBEYED,
    describe,
    health,
    known_provider,
    write_switch,
)
from tokone.core.hookspecs import hookimpl
from tokone.core.http.admin_auth import ADMIN_PATH, document_errors, make_admin_guard
from tokone.core.http.ingress import error_response
from tokone.core.types import Family


class SwitchRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Body of `POST /admin/providers/{name}/disable` (optional)."""

    reason: str = ""


def _ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else ""


def _not_found(name: str) -> Response[bytes]:
    return error_response(
        Family.OPENAI,
        GatewayError("not_found", f"No provider named '{name}' in the configuration."),
    )


def provider_router(gateway: Gateway) -> Router:
    """The `/admin/providers` routes, bound to `gateway`."""

    @get("/", name="admin.providers", summary="Provider channels and their health")
    async def list_providers() -> dict[str, Any]:
        channels = health(gateway)
        return {"data": [describe(p, channels.status(p.name)) for p in gateway.config.providers]}

    async def switch(name: str, disabled: bool, reason: str, ip: str) -> Response[Any]:
        provider = known_provider(gateway.config, name)
        if provider is None:
            return _not_found(name)
        channels = health(gateway)
        if not channels.obeys_switches:
            return error_response(
                Family.OPENAI, GatewayError("invalid_request", SWITCHES_NOT_OBEYED, status=409)
            )
        before = channels.status(name).get("state")
        written = await asyncio.to_thread(write_switch, gateway.engine, name, disabled, reason)
        channels.set_switch(name, written)
        await asyncio.to_thread(
            audit.record,
            gateway.engine,
            "admin-api",
            "channel.disable" if disabled else "channel.enable",
            f"channel:{name}",
            before={"state": before},
            after={"state": channels.status(name).get("state"), "reason": written.reason},
            ip=ip,
        )
        gateway.log.info("channel_switched", provider=name, disabled=disabled, reason=reason)
        return Response(describe(provider, channels.status(name)))

    @post(
        "/{name:str}/disable",
        name="admin.providers.disable",
        status_code=200,
        summary="Switch a channel off for every process",
    )
    async def disable(name: str, request: Request[Any, Any, Any]) -> Response[Any]:
        raw = await request.body()
        try:
            body = msgspec.json.decode(raw, type=SwitchRequest) if raw.strip() else SwitchRequest()
        except msgspec.DecodeError as exc:
            return error_response(
                Family.OPENAI, GatewayError("invalid_request", f"Invalid request body: {exc}")
            )
        return await switch(name, True, body.reason, _ip(request))

    @post(
        "/{name:str}/enable",
        name="admin.providers.enable",
        status_code=200,
        summary="Switch a channel back on",
    )
    async def enable(name: str, request: Request[Any, Any, Any]) -> Response[Any]:
        return await switch(name, False, "", _ip(request))

    return Router(
        path=f"{ADMIN_PATH}/providers",
        route_handlers=document_errors([list_providers, disable, enable], 400, 401, 404, 409, 503),
        guards=[make_admin_guard(gateway)],
        tags=["admin: providers"],
    )


@hookimpl
def routes(gateway: Gateway) -> list[Any]:
    """Mount `/admin/providers`."""
    return [provider_router(gateway)]
