"""The operators' admin API under `/admin/…`: accounts, groups, keys, money, codes, usage.

Every route requires an admin key (``Authorization: Bearer <one of [server] admin_keys>``,
see :func:`tokone.core.http.admin_auth.make_admin_guard`); user keys are refused. The OpenAPI schema
is served by Litestar at ``/schema`` (``/schema/openapi.json``). Errors use the OpenAI error
shape: 400 bad input, 401 no admin key, 404 unknown account / key / group / code, 409
conflict (duplicate name, revoked key, refund already made).

Amounts are sent as decimal strings (``"10"``, ``"2.5"``, at most 6 decimals) or whole
currency units (``10``) in ``amount``, or as integer micro-units in ``amount_micro``; JSON
floats are refused so no amount is ever rounded. Answers carry both forms. Changes to keys,
groups and multipliers take effect on every gateway process within about a second (a group
change made here applies to this process at once).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Parameter
from tokone.core.domain import accounts as ops
from tokone.core.domain.codes import MAX_CODES_PER_BATCH, create_codes, list_codes
from tokone.core.domain.usage_report import UsageFilter, time_range, usage_report
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.http.admin_auth import ADMIN_PATH, document_errors, make_admin_guard
from tokone.core.http.ingress import error_response
from tokone.core.store.tables import Account, ApiKey, Group
from tokone.core.types import Family
from tokone.plugins.token_pricing import group_table

# ---------------------------------------------------------------- request bodies

AMOUNT_PATTERN = r"^\s*[+-]?0*[0-9]{1,12}(\.[0-9]{1,6})?\s*$"
MAX_UNITS_INT = ops.MAX_UNITS - 1
_NONZERO = r"0*([1-9][0-9]{0,11}(\.[0-9]{1,6})?|0?\.[0-9]{0,5}[1-9])"
POSITIVE_PATTERN = r"^\s*\+?" + _NONZERO + r"\s*$"
NONZERO_PATTERN = r"^\s*[+-]?" + _NONZERO + r"\s*$"
MAX_MICRO = MAX_UNITS_INT * 1_000_000
Amount = (
    Annotated[str, msgspec.Meta(pattern=AMOUNT_PATTERN)]
    | Annotated[int, msgspec.Meta(ge=-MAX_UNITS_INT, le=MAX_UNITS_INT)]
)
"""Currency units: a decimal string with at most 6 decimals, or a whole number."""
Micro = Annotated[int, msgspec.Meta(ge=-(2**63) + 1, le=2**63 - 1)]
Multiplier = (
    Annotated[float, msgspec.Meta(ge=0, le=1000)]
    | Annotated[str, msgspec.Meta(pattern=r"^\s*\+?[0-9]{1,4}(\.[0-9]{1,6})?\s*$")]
)
AccountName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
GroupName = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
ISO_DATE = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?)?$"
)
"""`since` / `until`: an ISO 8601 date or date and time (UTC)."""
KeyId = Annotated[int, Parameter(ge=1, le=2**53)]
POSITIVE_AMOUNT = Schema(
    one_of=[
        Schema(type=OpenAPIType.STRING, pattern=POSITIVE_PATTERN),
        Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_UNITS_INT),
    ],
    description='Currency units > 0: a decimal string (at most 6 decimals, "2.5") or a whole '
    "number",
)
NONZERO_AMOUNT = Schema(
    one_of=[
        Schema(type=OpenAPIType.STRING, pattern=NONZERO_PATTERN),
        Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_UNITS_INT),
        Schema(type=OpenAPIType.INTEGER, minimum=-MAX_UNITS_INT, maximum=-1),
    ],
    description='Signed currency units, not 0: a decimal string ("-2.5") or a whole number',
)
POSITIVE_MICRO = Schema(
    type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_MICRO, description="Micro-units > 0"
)
NONZERO_MICRO = Schema(
    one_of=[
        Schema(type=OpenAPIType.INTEGER, minimum=1, maximum=MAX_MICRO),
        Schema(type=OpenAPIType.INTEGER, minimum=-MAX_MICRO, maximum=-1),
    ],
    description="Signed micro-units, not 0",
)
MULTIPLIER_SCHEMA = Schema(
    one_of=[
        Schema(type=OpenAPIType.INTEGER, minimum=0, maximum=1000),
        Schema(type=OpenAPIType.STRING, pattern=r"^\s*\+?[0-9]{1,3}(\.[0-9]{1,6})?\s*$"),
    ],
    description="A price multiplier from 0 to 1000, at most 6 decimals",
)


class AccountIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new account."""

    name: AccountName
    group: GroupName = "default"


class AmountIn(msgspec.Struct, forbid_unknown_fields=True):
    """A money movement: `amount` (decimal string or whole units) or `amount_micro`."""

    __openapi_one_of_required__ = ("amount", "amount_micro")
    __openapi_properties__ = {"amount": POSITIVE_AMOUNT, "amount_micro": POSITIVE_MICRO}

    amount: Amount | None = None
    amount_micro: Micro | None = None
    note: str = ""


class AdjustmentIn(AmountIn, forbid_unknown_fields=True):
    """A signed correction: `amount` (decimal string or whole units) or `amount_micro`, not 0."""

    __openapi_properties__ = {"amount": NONZERO_AMOUNT, "amount_micro": NONZERO_MICRO}


class RefundIn(AmountIn, forbid_unknown_fields=True):
    """A refund, optionally for one call (at most what it was charged, once)."""

    request_id: str | None = None


class OverrideIn(msgspec.Struct, forbid_unknown_fields=True):
    """An account's own multiplier; null returns the account to its group's."""

    __openapi_properties__ = {
        "multiplier": Schema(one_of=[MULTIPLIER_SCHEMA, Schema(type=OpenAPIType.NULL)])
    }

    multiplier: Multiplier | None


class GroupIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new pricing group."""

    __openapi_properties__ = {"multiplier": MULTIPLIER_SCHEMA}

    name: GroupName
    multiplier: Multiplier = 1.0


class GroupUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """A group's new multiplier."""

    __openapi_properties__ = {"multiplier": MULTIPLIER_SCHEMA}

    multiplier: Multiplier


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    """A new user key."""

    account: str
    name: str = ""
    models: list[str] = []
    """Models the key may use (`*` wildcards allowed); empty means all."""
    expires_in_days: float | None = None


class CodesIn(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of redemption codes, each worth the amount."""

    __openapi_one_of_required__ = ("amount", "amount_micro")
    __openapi_properties__ = {"amount": POSITIVE_AMOUNT, "amount_micro": POSITIVE_MICRO}

    amount: Amount | None = None
    amount_micro: Micro | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_CODES_PER_BATCH)] = 1


# ---------------------------------------------------------------- answers


class AccountOut(msgspec.Struct):
    """An account and its balance (`available` = balance - held)."""

    id: int
    name: str
    group: str
    multiplier_override: float | None
    balance: str
    balance_micro: int
    held_micro: int
    available_micro: int


class BalanceOut(msgspec.Struct):
    """An account's balance after a money movement."""

    account: str
    balance: str
    balance_micro: int


class CheckOut(msgspec.Struct):
    """`tokone accounts check` as data: caches against the entries they summarise."""

    account: str
    ok: bool
    balance_micro: int
    ledger_balance_micro: int
    held_micro: int
    open_holds_micro: int
    captured_micro: int
    usage_cost_micro: int


class EntryOut(msgspec.Struct):
    """One ledger entry."""

    id: int
    kind: str
    amount: str
    amount_micro: int
    request_id: str | None
    actor: str
    note: str
    created_at: float


class GroupOut(msgspec.Struct):
    """A pricing group; `source` is `config` or `database` (which wins on a clash)."""

    name: str
    multiplier: float
    source: str


class KeyOut(msgspec.Struct):
    """A key as listings show it (never the key)."""

    id: int
    account: str
    name: str
    prefix: str
    status: str
    models: list[str]
    expires_at: float | None


class NewKeyOut(msgspec.Struct):
    """A created or rotated key: `key` is shown this once and never again."""

    id: int
    account: str
    prefix: str
    key: str


class CodeOut(msgspec.Struct):
    """A redemption code as listings show it (never the code)."""

    id: int
    prefix: str
    amount: str
    amount_micro: int
    created_by: str
    created_at: float
    redeemed_at: float | None
    redeemed_by: str | None


class NewCodesOut(msgspec.Struct):
    """Created codes: shown this once; only their hashes are stored."""

    amount: str
    amount_micro: int
    codes: list[str]


# ---------------------------------------------------------------- helpers


def amount_of(amount: str | int | None, amount_micro: int | None) -> int:
    """Micro-units from exactly one of `amount` (currency units) and `amount_micro`."""
    if (amount is None) == (amount_micro is None):
        raise ops.AccountError('give exactly one of amount (e.g. "2.5") and amount_micro')
    if amount_micro is not None:
        return amount_micro
    return ops.parse_amount(str(amount))


def account_out(account: Account) -> AccountOut:
    """An account row as an answer."""
    return AccountOut(
        id=account.id or 0,
        name=account.name,
        group=account.group,
        multiplier_override=account.multiplier_override,
        balance=ops.format_amount(account.balance),
        balance_micro=account.balance,
        held_micro=account.held,
        available_micro=account.balance - account.held,
    )


def key_out(key: ApiKey, account: str) -> KeyOut:
    """A key row as an answer."""
    info = ops.key_info(key)
    return KeyOut(account=account, **info)


def account_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """An AccountError in the OpenAI error shape with its status."""
    assert isinstance(exc, ops.AccountError)
    kind = {404: "not_found"}.get(exc.status, "invalid_request")
    return error_response(Family.OPENAI, GatewayError(kind, str(exc), status=exc.status))


def admin_router(gateway: Gateway) -> Router:
    """Every admin route, bound to `gateway`, behind the admin guard."""
    engine = gateway.engine
    config_groups = {name: g.multiplier for name, g in gateway.config.groups.items()}

    def new_key(row: ApiKey, key: str, account: str) -> NewKeyOut:
        return NewKeyOut(id=row.id or 0, account=account, prefix=row.prefix, key=key)

    # ------------------------------------------------------------ accounts

    @get("/accounts", sync_to_thread=True)
    def accounts_list() -> list[AccountOut]:
        """Every account with its balance."""
        return [account_out(a) for a in ops.list_accounts(engine)]

    @post("/accounts", sync_to_thread=True)
    def accounts_create(data: AccountIn) -> AccountOut:
        """Create an account (zero balance) in a known group."""
        known = ops.known_groups(engine, config_groups)
        return account_out(ops.create_account(engine, data.name, data.group, known))

    @get("/accounts/{name:str}", sync_to_thread=True)
    def accounts_show(name: str) -> dict[str, Any]:
        """An account's balance, group, override, usage totals and keys."""
        return ops.account_summary(engine, name)

    @put("/accounts/{name:str}/override", sync_to_thread=True)
    def accounts_override(name: str, data: OverrideIn) -> AccountOut:
        """Set (or with null clear) the account's own price multiplier."""
        multiplier = None if data.multiplier is None else ops.check_multiplier(data.multiplier)
        return account_out(ops.set_override(engine, name, multiplier))

    def move(name: str, kind: str, data: AmountIn, request_id: str | None = None) -> BalanceOut:
        amount = amount_of(data.amount, data.amount_micro)
        balance = ops.add_entry(engine, name, kind, amount, "admin", data.note, request_id)
        return BalanceOut(account=name, balance=ops.format_amount(balance), balance_micro=balance)

    @post("/accounts/{name:str}/topups", sync_to_thread=True)
    def accounts_topup(name: str, data: AmountIn) -> BalanceOut:
        """Add prepaid balance (a positive `topup` entry)."""
        return move(name, "topup", data)

    @post("/accounts/{name:str}/adjustments", sync_to_thread=True)
    def accounts_adjust(name: str, data: AdjustmentIn) -> BalanceOut:
        """Correct a balance up or down (a signed `adjustment` entry; say why in `note`)."""
        return move(name, "adjustment", data)

    @post("/accounts/{name:str}/refunds", sync_to_thread=True)
    def accounts_refund(name: str, data: RefundIn) -> BalanceOut:
        """Give money back (a positive `refund` entry), optionally for one charged call."""
        return move(name, "refund", data, data.request_id)

    @get("/accounts/{name:str}/check", sync_to_thread=True)
    def accounts_check(name: str) -> CheckOut:
        """Recompute balance, holds and charges from the ledger, holds and usage records."""
        r = ops.reconcile(engine, name)
        return CheckOut(
            account=r.account,
            ok=r.ok,
            balance_micro=r.balance,
            ledger_balance_micro=r.ledger_balance,
            held_micro=r.held,
            open_holds_micro=r.open_holds,
            captured_micro=r.captured,
            usage_cost_micro=r.usage_cost,
        )

    @get("/accounts/{name:str}/ledger", sync_to_thread=True)
    def accounts_ledger(
        name: str, limit: int = Parameter(default=100, ge=1, le=10_000)
    ) -> list[EntryOut]:
        """The account's newest ledger entries, newest first."""
        return [
            EntryOut(
                id=e.id or 0,
                kind=e.kind,
                amount=ops.format_amount(e.amount),
                amount_micro=e.amount,
                request_id=e.request_id,
                actor=e.actor,
                note=e.note,
                created_at=e.created_at,
            )
            for e in ops.ledger_entries(engine, name, limit)
        ]

    # ------------------------------------------------------------ groups

    @get("/groups", sync_to_thread=True)
    def groups_list() -> list[GroupOut]:
        """Every pricing group (config and database) with its multiplier."""
        return [GroupOut(n, m, s) for n, m, s in ops.list_groups(engine, config_groups)]

    @post("/groups", sync_to_thread=True)
    def groups_create(data: GroupIn) -> GroupOut:
        """Define a new group in the database."""
        group: Group = ops.create_group(engine, data.name, data.multiplier, config_groups)
        group_table(gateway).load()  # this process at once, the others within a second
        return GroupOut(group.name, group.multiplier, "database")

    @put("/groups/{name:str}", sync_to_thread=True)
    def groups_update(name: str, data: GroupUpdate) -> GroupOut:
        """Change a group's multiplier (a config group gets a database override)."""
        group = ops.set_group(engine, name, data.multiplier, config_groups)
        group_table(gateway).load()
        return GroupOut(group.name, group.multiplier, "database")

    # ------------------------------------------------------------ keys

    @get("/keys", sync_to_thread=True)
    def keys_list(account: str | None = None) -> list[KeyOut]:
        """Keys (never the keys themselves), optionally of one account."""
        return [key_out(k, a) for k, a in ops.list_keys(engine, account)]

    @post("/keys", sync_to_thread=True)
    def keys_create(data: KeyIn) -> NewKeyOut:
        """Create a key; the answer is the only time the key is shown."""
        row, key = ops.create_key(
            engine,
            gateway.hasher,
            gateway.config.server.key_prefix,
            data.account,
            name=data.name,
            models=data.models,
            expires_in_days=data.expires_in_days,
        )
        return new_key(row, key, data.account)

    def status_route(action: str, status: str) -> Any:
        @post(
            f"/keys/{{key_id:int}}/{action}",
            sync_to_thread=True,
            status_code=200,
            name=f"admin.keys.{action}",
        )
        def handler(key_id: KeyId) -> KeyOut:
            row = ops.set_key_status(engine, key_id, status)
            return key_out(row, ops.account_name(engine, row.account_id))

        # HTTPRouteHandler has __slots__, but the `post` subclass does not, so this works.
        cast(Any, handler).__doc__ = f"Set the key's status to `{status}`."
        return handler

    @post("/keys/{key_id:int}/rotate", sync_to_thread=True, status_code=200)
    def keys_rotate(key_id: KeyId) -> NewKeyOut:
        """Give the key a new secret (shown this once); the old one stops working."""
        row, key = ops.rotate_key(engine, gateway.hasher, gateway.config.server.key_prefix, key_id)
        return new_key(row, key, ops.account_name(engine, row.account_id))

    # ------------------------------------------------------------ codes and usage

    @get("/codes", sync_to_thread=True)
    def codes_list(unused: bool = False) -> list[CodeOut]:
        """Redemption codes (never the codes), optionally only the unredeemed ones."""
        return [
            CodeOut(
                id=c.id,
                prefix=c.prefix,
                amount=ops.format_amount(c.amount),
                amount_micro=c.amount,
                created_by=c.created_by,
                created_at=c.created_at,
                redeemed_at=c.redeemed_at,
                redeemed_by=c.redeemed_by,
            )
            for c in list_codes(engine, unused_only=unused)
        ]

    @post("/codes", sync_to_thread=True)
    def codes_create(data: CodesIn) -> NewCodesOut:
        """Create `count` codes worth `amount` each; the answer is the only time they show."""
        amount = amount_of(data.amount, data.amount_micro)
        codes = create_codes(engine, gateway.hasher, amount, data.count, "admin")
        return NewCodesOut(amount=ops.format_amount(amount), amount_micro=amount, codes=codes)

    @get("/usage", sync_to_thread=True)
    def usage(
        account: str | None = None,
        key: int | None = None,
        model: str | None = None,
        since: Annotated[str | None, Parameter(pattern=ISO_DATE)] = None,
        until: Annotated[str | None, Parameter(pattern=ISO_DATE)] = None,
        days: Annotated[float | None, Parameter(gt=0, le=36_500)] = None,
    ) -> dict[str, Any]:
        """Usage per account, key and model with totals (`since`/`until` ISO 8601, or `days`)."""
        start, end = time_range(since, until, days)
        report = usage_report(engine, UsageFilter(account, key, model, start, end))
        return report.to_dict()

    handlers = [
        accounts_list,
        accounts_create,
        accounts_show,
        accounts_override,
        accounts_topup,
        accounts_adjust,
        accounts_refund,
        accounts_check,
        accounts_ledger,
        groups_list,
        groups_create,
        groups_update,
        keys_list,
        keys_create,
        status_route("disable", "disabled"),
        status_route("enable", "enabled"),
        status_route("revoke", "revoked"),
        keys_rotate,
        codes_list,
        codes_create,
        usage,
    ]
    return Router(
        path=ADMIN_PATH,
        route_handlers=document_errors(handlers, 400, 401, 404, 409, 503),
        guards=[make_admin_guard(gateway)],
        exception_handlers={ops.AccountError: account_error},
        tags=["admin"],
    )


@hookimpl
def routes(gateway: Gateway) -> list[Any]:
    """Mount the admin API."""
    return [admin_router(gateway)]
