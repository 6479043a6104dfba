"""`[plugins.key_limits]`: the default time zone and per-group default limits."""

from __future__ import annotations

import msgspec
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import parse_amount
from tokone.core.domain.spend_limits import check_period, check_timezone


class GroupLimits(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Limits every key of a group gets unless the key sets its own (amounts as strings)."""

    total: str | None = None
    """A total cap per key, e.g. "100"."""
    per_period: str | None = None
    """A cap per key per `period`, e.g. "5"."""
    period: str = "day"

    def __post_init__(self) -> None:
        """Refuse a malformed amount or period at load time."""
        try:
            for value in (self.total, self.per_period):
                if value is not None:
                    parse_amount(value)
            check_period(self.period)
        except AccountError as exc:
            raise ValueError(str(exc)) from None


class KeyLimitsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The plugin's table: ``timezone`` (default UTC) and ``[plugins.key_limits.groups.NAME]``."""

    timezone: str = "UTC"
    """Where a day, week or month starts for keys that name no zone of their own."""
    groups: dict[str, GroupLimits] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse an unknown time zone at load time."""
        try:
            check_timezone(self.timezone)
        except AccountError as exc:
            raise ValueError(str(exc)) from None
