"""`/admin/keys/{id}/limits`, `/admin/accounts/{name}/budget|alerts`: spend limits, IP
allow-lists, budgets and alert settings (enforced by the `key_limits`, `ip_allow` and
`alerts` plugins; the operations are in :mod:`tokone.core.domain.spend_limits` and
:mod:`tokone.core.domain.alerts`)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import available_timezones

import msgspec
from litestar import Controller, Request, get, put
from litestar.openapi.spec import OpenAPIType, Schema
from sqlmodel import Session
from tokone.core.domain.accounts import get_account
from tokone.core.domain.alerts import list_deliveries, set_account_alerts
from tokone.core.domain.key_ops import get_key
from tokone.core.domain.spend_limits import key_limit_info, set_account_budget, set_key_limits
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.bodies import AccountName, KeyId, KeyIn
from tokone.plugins.admin_api.shared import ERRORS, record

MAX_LIMIT = 2**62
Limit = Annotated[int, msgspec.Meta(ge=0, le=MAX_LIMIT)]
"""A cap in micro-units."""
LIMIT_OR_NULL = Schema(
    one_of=[
        Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=MAX_LIMIT),
        Schema(type=OpenAPIType.NULL),
    ],
    description="Micro-units (null: none)",
)
ZONES = sorted(available_timezones())
_HEX = "[0-9a-fA-F]{1,4}"
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4 = f"({_OCTET}\\.){{3}}{_OCTET}"
_V6 = (
    f"(({_HEX}:){{7}}{_HEX}|({_HEX}:){{1,7}}:|({_HEX}:){{1,6}}:{_HEX}"
    f"|({_HEX}:){{1,5}}(:{_HEX}){{1,2}}|({_HEX}:){{1,4}}(:{_HEX}){{1,3}}"
    f"|({_HEX}:){{1,3}}(:{_HEX}){{1,4}}|({_HEX}:){{1,2}}(:{_HEX}){{1,5}}"
    f"|{_HEX}:(:{_HEX}){{1,6}}|:((:{_HEX}){{1,7}}|:))"
)
CIDR_PATTERN = f"^({_V4}(/(3[0-2]|[12]?[0-9]))?|{_V6}(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?)$"
"""An IPv4 or IPv6 address or CIDR range."""
Cidr = Annotated[str, msgspec.Meta(pattern=CIDR_PATTERN)]


class KeyLimitsIn(msgspec.Struct, forbid_unknown_fields=True):
    """A key's limits, replaced as a whole (null / [] : none)."""

    __openapi_properties__ = {
        "spend_limit_micro": LIMIT_OR_NULL,
        "period_limit_micro": LIMIT_OR_NULL,
        "limit_timezone": Schema(
            type=OpenAPIType.STRING,
            enum=["", *ZONES],
            description='IANA time zone ("" : the configured default)',
        ),
        "allowed_ips": Schema(
            type=OpenAPIType.ARRAY,
            max_items=256,
            items=Schema(type=OpenAPIType.STRING, pattern=CIDR_PATTERN),
            description="CIDR ranges (IPv4, IPv6) the key may be used from; empty: anywhere",
        ),
    }

    spend_limit_micro: Limit | None = None
    """Total cap."""
    period_limit_micro: Limit | None = None
    """Cap per `limit_period`."""
    limit_period: Literal["day", "week", "month"] = "day"
    limit_timezone: str = ""
    """IANA zone whose midnight starts a period ("" : `[plugins.key_limits] timezone`)."""
    allowed_ips: Annotated[list[Cidr], msgspec.Meta(max_length=256)] = []
    """CIDR ranges (IPv4, IPv6) the key may be used from; empty: anywhere."""


class KeyCreateIn(KeyIn, forbid_unknown_fields=True):
    """A new user key, optionally with its spend limits and IP allow-list from the start."""

    __openapi_properties__: ClassVar[dict[str, Schema]] = {
        "spend_limit_micro": LIMIT_OR_NULL,
        "period_limit_micro": LIMIT_OR_NULL,
        "allowed_ips": KeyLimitsIn.__openapi_properties__["allowed_ips"],
    }

    spend_limit_micro: Limit | None = None
    period_limit_micro: Limit | None = None
    limit_period: Literal["day", "week", "month"] = "day"
    allowed_ips: Annotated[list[Cidr], msgspec.Meta(max_length=256)] = msgspec.field(
        default_factory=list
    )


class KeyLimitsOut(msgspec.Struct):
    """A key's limits and what it spent (`spent_*` null when there is no such limit)."""

    key_id: int
    spend_limit_micro: int | None
    period_limit_micro: int | None
    limit_period: str | None
    limit_timezone: str
    allowed_ips: list[str]
    spent_total_micro: int | None
    spent_this_period_micro: int | None
    period_resets_at: float | None


class BudgetIn(msgspec.Struct, forbid_unknown_fields=True):
    """An account's budget per period (null: none)."""

    __openapi_properties__ = {"budget_micro": LIMIT_OR_NULL}

    budget_micro: Limit | None
    period: Literal["day", "week", "month", "total"] = "month"


class AlertsIn(msgspec.Struct, forbid_unknown_fields=True):
    """An account's low-balance threshold and alert destinations ("" : none)."""

    __openapi_properties__ = {"threshold_micro": LIMIT_OR_NULL}

    threshold_micro: Limit | None = None
    webhook: Annotated[str, msgspec.Meta(max_length=2000, pattern=r"^$|^https?://.+$")] = ""
    email: Annotated[str, msgspec.Meta(max_length=320, pattern=r"^$|^[^@]+@[^@]+$")] = ""


class AlertsOut(msgspec.Struct):
    """An account's alert settings and its newest deliveries."""

    account: str
    threshold_micro: int | None
    webhook: str
    email: str
    deliveries: list[dict[str, Any]]


def limits_out(gateway: Gateway, key_id: int) -> KeyLimitsOut:
    """The answer for one key."""
    with Session(gateway.engine) as session:
        row = get_key(session, key_id)
    settings = gateway.plugin_config("key_limits")
    info = key_limit_info(gateway.engine, row, settings.timezone if settings else "UTC")
    return KeyLimitsOut(
        key_id=key_id,
        spend_limit_micro=info["spend_limit"],
        period_limit_micro=info["period_limit"],
        limit_period=info["limit_period"],
        limit_timezone=info["limit_timezone"],
        allowed_ips=info["allowed_ips"],
        spent_total_micro=info["spent_total"],
        spent_this_period_micro=info["spent_this_period"],
        period_resets_at=info["period_resets_at"],
    )


def limit_settings(out: KeyLimitsOut) -> dict[str, Any]:
    """The settable part of a key's limits, for the audit log (not what it spent)."""
    return {
        "spend_limit_micro": out.spend_limit_micro,
        "period_limit_micro": out.period_limit_micro,
        "limit_period": out.limit_period,
        "limit_timezone": out.limit_timezone,
        "allowed_ips": out.allowed_ips,
    }


def alert_settings(out: AlertsOut) -> dict[str, Any]:
    """The settable part of an account's alerts, for the audit log (not its deliveries)."""
    return {"threshold_micro": out.threshold_micro, "webhook": out.webhook, "email": out.email}


def alerts_out(gateway: Gateway, name: str) -> AlertsOut:
    """The answer for one account."""
    with Session(gateway.engine) as session:
        account = get_account(session, name)
    return AlertsOut(
        account=name,
        threshold_micro=account.alert_threshold,
        webhook=account.alert_webhook,
        email=account.alert_email,
        deliveries=list_deliveries(gateway.engine, name),
    )


class LimitsController(Controller):
    """Spend limits, IP allow-lists, budgets and alerts."""

    path = "/"

    @get("/keys/{key_id:int}/limits", sync_to_thread=True, responses=ERRORS)
    def key_limits_get(self, key_id: KeyId, gateway: Gateway) -> KeyLimitsOut:
        """The key's limits, IP allow-list and spend this period."""
        return limits_out(gateway, key_id)

    @put("/keys/{key_id:int}/limits", sync_to_thread=True, responses=ERRORS)
    def key_limits_put(
        self,
        key_id: KeyId,
        data: KeyLimitsIn,
        gateway: Gateway,
        request: Request[Any, Any, Any],
    ) -> KeyLimitsOut:
        """Replace the key's limits and IP allow-list (effective within a second); audited."""
        before = limit_settings(limits_out(gateway, key_id))
        set_key_limits(
            gateway.engine,
            key_id,
            total=data.spend_limit_micro,
            per_period=data.period_limit_micro,
            period=data.limit_period,
            timezone=data.limit_timezone,
            allowed_ips=data.allowed_ips,
        )
        after = limits_out(gateway, key_id)
        record(gateway, request, "key.limits", f"key:{key_id}", before, limit_settings(after))
        return after

    @put("/accounts/{name:str}/budget", sync_to_thread=True, responses=ERRORS)
    def account_budget_put(
        self,
        name: AccountName,
        data: BudgetIn,
        gateway: Gateway,
        request: Request[Any, Any, Any],
    ) -> None:
        """Set or remove the account's budget per period; audited."""
        with Session(gateway.engine) as session:
            account = get_account(session, name)
        before = {"budget": account.budget, "period": account.budget_period}
        set_account_budget(gateway.engine, name, data.budget_micro, data.period)
        after = {
            "budget": data.budget_micro,
            "period": data.period if data.budget_micro is not None else None,
        }
        record(gateway, request, "account.budget", f"account:{name}", before, after)

    @get("/accounts/{name:str}/alerts", sync_to_thread=True, responses=ERRORS)
    def account_alerts_get(self, name: AccountName, gateway: Gateway) -> AlertsOut:
        """The account's alert settings and its newest alert deliveries with their status."""
        return alerts_out(gateway, name)

    @put("/accounts/{name:str}/alerts", sync_to_thread=True, responses=ERRORS)
    def account_alerts_put(
        self,
        name: AccountName,
        data: AlertsIn,
        gateway: Gateway,
        request: Request[Any, Any, Any],
    ) -> AlertsOut:
        """Replace the account's low-balance threshold and alert destinations; audited."""
        before = alert_settings(alerts_out(gateway, name))
        set_account_alerts(
            gateway.engine,
            name,
            threshold=data.threshold_micro,
            webhook=data.webhook,
            email=data.email,
        )
        after = alerts_out(gateway, name)
        record(gateway, request, "account.alerts", f"account:{name}", before, alert_settings(after))
        return after
