"""What users can ask about their own account, with their own key.

* ``GET /v1/dashboard/balance``: the caller's account, balance, money held (reserved by the
  gateway processes for calls in flight; each reserves a little ahead and gives it back
  within a second of inactivity), what is available, and the price multiplier.
* ``GET /v1/dashboard/usage``: the caller's usage per key and model with totals; query
  ``since`` / ``until`` (ISO 8601, UTC unless stated) or ``days``, and ``model``.
* ``POST /v1/dashboard/redeem`` ``{"code": "tkc-…"}``: redeem a top-up code for the
  caller's account. A code credits exactly once, however many redeem it at the same moment;
  404 for an unknown code, 409 for one already used.
* ``GET /pricing``: every priced model's effective prices for the caller, per million
  tokens (``per_request`` per call), with the caller's multiplier already applied, and the
  service-tier factors that multiply them further.

The key is sent as for inference calls (``Authorization: Bearer``, ``x-api-key`` or
``x-goog-api-key``) and resolved by the app's ``principal`` dependency; errors (raised as
``GatewayError``) are answered by the app's handler in the OpenAI error shape. Amounts are
given as decimal strings and as integer micro-units.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar import Response, get, post
from sqlmodel import Session
from tokone.core.domain.codes import redeem
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import format_amount
from tokone.core.domain.prices import PricingOut, group_multipliers, multiplier, pricing_for
from tokone.core.domain.usage_report import UsageFilter, time_range, usage_report
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.http.admin_auth import document_errors
from tokone.core.http.ingress import FAMILY_OPT, Caller
from tokone.core.store.tables import Account
from tokone.core.types import Family, Principal

FAMILY = Family.OPENAI


class BalanceOut(msgspec.Struct):
    """The caller's account and money (`available_micro` = balance - held)."""

    account: str
    group: str
    multiplier: float
    balance: str
    balance_micro: int
    held_micro: int
    available: str
    available_micro: int


class RedeemIn(msgspec.Struct, forbid_unknown_fields=True):
    """A redemption code."""

    code: str


class RedeemOut(msgspec.Struct):
    """What a redeemed code credited, and the balance after it."""

    account: str
    credited: str
    credited_micro: int
    balance: str
    balance_micro: int


def dashboard_handlers(gateway: Gateway) -> list[Any]:
    """The user endpoints, bound to `gateway`."""
    engine = gateway.engine
    opt = {FAMILY_OPT: FAMILY}  # errors in OpenAI's shape, whatever the client's headers

    def read_balance(principal: Principal) -> BalanceOut:
        with Session(engine) as session:
            account = session.get(Account, principal.account_id)
        if account is None:
            raise GatewayError("authentication", "This key's account no longer exists.")
        return BalanceOut(
            account=account.name,
            group=account.group,
            multiplier=multiplier(principal, group_multipliers(engine, gateway.config)),
            balance=format_amount(account.balance),
            balance_micro=account.balance,
            held_micro=account.held,
            available=format_amount(account.balance - account.held),
            available_micro=account.balance - account.held,
        )

    @get("/v1/dashboard/balance", tags=["dashboard"], opt=opt)
    async def balance(principal: Caller) -> Response[BalanceOut]:
        """The caller's balance, held and available money, and price multiplier."""
        return Response(await asyncio.to_thread(read_balance, principal))

    @get("/v1/dashboard/usage", tags=["dashboard"], opt=opt)
    async def usage(
        principal: Caller,
        since: str | None = None,
        until: str | None = None,
        days: float | None = None,
        model: str | None = None,
    ) -> Response[dict[str, Any]]:
        """The caller's usage per key and model, with totals (`since`/`until` or `days`)."""
        try:
            start, end = time_range(since, until, days)
        except AccountError as exc:
            raise GatewayError("invalid_request", str(exc)) from None
        wanted = UsageFilter(principal.account_name, None, model, start, end)
        report = await asyncio.to_thread(usage_report, engine, wanted)
        return Response(report.to_dict())

    @post("/v1/dashboard/redeem", tags=["dashboard"], status_code=200, opt=opt)
    async def redeem_code(principal: Caller, data: RedeemIn) -> Response[RedeemOut]:
        """Redeem a top-up code for the caller's account (each code credits exactly once)."""
        try:
            amount, new_balance = await asyncio.to_thread(
                redeem, engine, gateway.hasher, data.code, principal.account_id
            )
        except AccountError as exc:
            kind = "not_found" if exc.status == 404 else "invalid_request"
            raise GatewayError(kind, str(exc), status=exc.status) from None
        return Response(
            RedeemOut(
                account=principal.account_name,
                credited=format_amount(amount),
                credited_micro=amount,
                balance=format_amount(new_balance),
                balance_micro=new_balance,
            )
        )

    @get("/pricing", tags=["dashboard"], opt=opt)
    async def pricing(principal: Caller) -> Response[PricingOut]:
        """Each priced model's prices for the caller (multiplier applied, per million tokens)."""
        prices = await asyncio.to_thread(pricing_for, engine, gateway.config, principal)
        return Response(prices)

    return document_errors([balance, usage, redeem_code, pricing], 400, 401, 403, 404, 409, 503)


@hookimpl
def routes(gateway: Gateway) -> list[Any]:
    """Mount the user dashboard endpoints and `/pricing`."""
    return dashboard_handlers(gateway)
