"""What the admin API accepts: request bodies, amounts and their OpenAPI schemas.

Amounts are decimal strings (``"10"``, ``"2.5"``, at most 6 decimals) or whole currency
units in ``amount``, or integer micro-units in ``amount_micro``; JSON floats are refused so no
amount is ever rounded. The patterns here and the exact parsing in
:mod:`tokone.core.domain.money` accept the same texts.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import Parameter
from tokone.core.domain.codes import MAX_CODES_PER_BATCH
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import MAX_UNITS, parse_amount

AMOUNT_PATTERN = r"^\s*[+-]?0*[0-9]{1,12}(\.[0-9]{1,6})?\s*$"
MAX_UNITS_INT = MAX_UNITS - 1
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
MAX_INTEGER = 2**53
"""The largest row id or offset a path or query parameter takes (exact as a JSON number, and
well inside the database's 64-bit integers)."""
KeyId = Annotated[int, Parameter(ge=1, le=MAX_INTEGER)]
CodeId = Annotated[int, Parameter(ge=1, le=MAX_INTEGER)]
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
    __openapi_properties__ = {
        "amount": POSITIVE_AMOUNT,
        "amount_micro": POSITIVE_MICRO,
        "expires_in_days": Schema(
            one_of=[
                Schema(type=OpenAPIType.NUMBER, minimum=0.01, maximum=36_500),
                Schema(type=OpenAPIType.NULL),
            ]
        ),
    }

    amount: Amount | None = None
    amount_micro: Micro | None = None
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_CODES_PER_BATCH)] = 1
    batch: Annotated[str, msgspec.Meta(max_length=100)] = ""
    """A name for the batch (shown in listings)."""
    expires_in_days: Annotated[float, msgspec.Meta(ge=0.01, le=36_500)] | None = None
    """The codes can no longer be redeemed this many days from now (null: never)."""


def amount_of(amount: str | int | None, amount_micro: int | None) -> int:
    """Micro-units from exactly one of `amount` (currency units) and `amount_micro`."""
    if (amount is None) == (amount_micro is None):
        raise AccountError('give exactly one of amount (e.g. "2.5") and amount_micro')
    if amount_micro is not None:
        return amount_micro
    return parse_amount(str(amount))
