"""`/admin/accounts`: accounts, their money movements, their ledger and its reconciliation."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post, put
from litestar.params import Parameter
from sqlmodel import Session
from tokone.core.domain.accounts import (
    account_summary,
    create_account,
    get_account,
    list_accounts,
    set_override,
)
from tokone.core.domain.groups import known_groups
from tokone.core.domain.ledger_entries import add_entry, ledger_entries
from tokone.core.domain.money import check_multiplier, format_amount
from tokone.core.domain.reconcile import reconcile
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.answers import (
    AccountOut,
    BalanceOut,
    CheckOut,
    EntryOut,
    account_out,
    entry_out,
)
from tokone.plugins.admin_api.bodies import (
    AccountIn,
    AdjustmentIn,
    AmountIn,
    OverrideIn,
    RefundIn,
    amount_of,
)
from tokone.plugins.admin_api.shared import ERRORS, config_groups, record


def move(
    gateway: Gateway,
    request: Request[Any, Any, Any],
    name: str,
    kind: str,
    data: AmountIn,
    request_id: str | None = None,
) -> BalanceOut:
    """Write one money movement of `kind` to account `name` (and to the audit log); answer
    the new balance."""
    amount = amount_of(data.amount, data.amount_micro)
    with Session(gateway.engine) as session:
        before = get_account(session, name).balance
    balance = add_entry(gateway.engine, name, kind, amount, "admin", data.note, request_id)
    after = {"balance": format_amount(balance), "amount": format_amount(amount), "note": data.note}
    if request_id:
        after["request_id"] = request_id
    action = {"topup": "topup", "adjustment": "adjust", "refund": "refund"}[kind]
    record(
        gateway,
        request,
        f"account.{action}",
        f"account:{name}",
        {"balance": format_amount(before)},
        after,
    )
    return BalanceOut(account=name, balance=format_amount(balance), balance_micro=balance)


class AccountController(Controller):
    """Accounts and their money."""

    path = "/accounts"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def accounts_list(self, gateway: Gateway) -> list[AccountOut]:
        """Every account with its balance."""
        return [account_out(a) for a in list_accounts(gateway.engine)]

    @post("/", sync_to_thread=True, responses=ERRORS)
    def accounts_create(
        self, data: AccountIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> AccountOut:
        """Create an account (zero balance) in a known group."""
        known = known_groups(gateway.engine, config_groups(gateway))
        account = create_account(gateway.engine, data.name, data.group, known)
        record(
            gateway, request, "account.create", f"account:{data.name}", None, {"group": data.group}
        )
        return account_out(account)

    @get("/{name:str}", sync_to_thread=True, responses=ERRORS)
    def accounts_show(self, name: str, gateway: Gateway) -> dict[str, Any]:
        """An account's balance, group, override, usage totals and keys."""
        return account_summary(gateway.engine, name)

    @put("/{name:str}/override", sync_to_thread=True, responses=ERRORS)
    def accounts_override(
        self, name: str, data: OverrideIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> AccountOut:
        """Set (or with null clear) the account's own price multiplier."""
        multiplier = None if data.multiplier is None else check_multiplier(data.multiplier)
        with Session(gateway.engine) as session:
            before = get_account(session, name).multiplier_override
        account = set_override(gateway.engine, name, multiplier)
        record(
            gateway,
            request,
            "account.override",
            f"account:{name}",
            {"multiplier_override": before},
            {"multiplier_override": multiplier},
        )
        return account_out(account)

    @post("/{name:str}/topups", sync_to_thread=True, responses=ERRORS)
    def accounts_topup(
        self, name: str, data: AmountIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> BalanceOut:
        """Add prepaid balance (a positive `topup` entry)."""
        return move(gateway, request, name, "topup", data)

    @post("/{name:str}/adjustments", sync_to_thread=True, responses=ERRORS)
    def accounts_adjust(
        self, name: str, data: AdjustmentIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> BalanceOut:
        """Correct a balance up or down (a signed `adjustment` entry; say why in `note`)."""
        return move(gateway, request, name, "adjustment", data)

    @post("/{name:str}/refunds", sync_to_thread=True, responses=ERRORS)
    def accounts_refund(
        self, name: str, data: RefundIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> BalanceOut:
        """Give money back (a positive `refund` entry), optionally for one charged call."""
        return move(gateway, request, name, "refund", data, data.request_id)

    @get("/{name:str}/check", sync_to_thread=True, responses=ERRORS)
    def accounts_check(self, name: str, gateway: Gateway) -> CheckOut:
        """Recompute balance, holds and charges from the ledger, holds and usage records."""
        r = reconcile(gateway.engine, name)
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

    @get("/{name:str}/ledger", sync_to_thread=True, responses=ERRORS)
    def accounts_ledger(
        self,
        name: str,
        gateway: Gateway,
        limit: int = Parameter(default=100, ge=1, le=10_000),
    ) -> list[EntryOut]:
        """The account's newest ledger entries, newest first."""
        return [entry_out(e) for e in ledger_entries(gateway.engine, name, limit)]
