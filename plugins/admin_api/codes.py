"""`/admin/codes`: redemption codes (a code redeemed on the dashboard is a top-up)."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Request, get, post
from tokone.core.domain.codes import CodeInfo, create_codes, disable_code, list_codes
from tokone.core.domain.money import format_amount
from tokone.core.gateway import Gateway
from tokone.plugins.admin_api.answers import CodeOut, NewCodesOut
from tokone.plugins.admin_api.bodies import CodeId, CodesIn, amount_of
from tokone.plugins.admin_api.shared import ERRORS, record


def code_out(c: CodeInfo) -> CodeOut:
    """A code as the API lists it."""
    return CodeOut(
        id=c.id,
        prefix=c.prefix,
        amount=format_amount(c.amount),
        amount_micro=c.amount,
        created_by=c.created_by,
        created_at=c.created_at,
        redeemed_at=c.redeemed_at,
        redeemed_by=c.redeemed_by,
        batch=c.batch,
        expires_at=c.expires_at,
        disabled_at=c.disabled_at,
        state=c.state,
    )


class CodeController(Controller):
    """Redemption codes."""

    path = "/codes"

    @get("/", sync_to_thread=True, responses=ERRORS)
    def codes_list(self, gateway: Gateway, unused: bool = False) -> list[CodeOut]:
        """Redemption codes (never the codes), optionally only the unredeemed ones."""
        return [code_out(c) for c in list_codes(gateway.engine, unused_only=unused)]

    @post("/", sync_to_thread=True, responses=ERRORS)
    def codes_create(
        self, data: CodesIn, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> NewCodesOut:
        """Create `count` codes worth `amount` each; the answer is the only time they show."""
        amount = amount_of(data.amount, data.amount_micro)
        codes = create_codes(
            gateway.engine,
            gateway.hasher,
            amount,
            data.count,
            "admin",
            batch=data.batch,
            expires_at=(
                None if data.expires_in_days is None else time.time() + data.expires_in_days * 86400
            ),
        )
        record(
            gateway,
            request,
            "codes.create",
            "codes",
            None,
            {"count": data.count, "amount": format_amount(amount), "batch": data.batch},
        )
        return NewCodesOut(amount=format_amount(amount), amount_micro=amount, codes=codes)

    @post("/{code_id:int}/disable", sync_to_thread=True, status_code=200, responses=ERRORS)
    def codes_disable(
        self, code_id: CodeId, gateway: Gateway, request: Request[Any, Any, Any]
    ) -> CodeOut:
        """Make an unused code unredeemable (409 if it was redeemed or disabled already)."""
        disable_code(gateway.engine, code_id)
        record(
            gateway,
            request,
            "code.disable",
            f"code:{code_id}",
            {"state": "unused"},
            {"state": "disabled"},
        )
        return code_out(next(c for c in list_codes(gateway.engine) if c.id == code_id))
