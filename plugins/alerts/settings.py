"""`[plugins.alerts]`: where alerts go by default, how webhooks are signed, SMTP, retries."""

from __future__ import annotations

from typing import Annotated

import msgspec
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import parse_amount


class GroupAlerts(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Defaults for the accounts of one group (an account's own setting wins)."""

    threshold: str | None = None
    """Low-balance threshold, e.g. "20"."""


class SMTPSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The mail server alerts are sent through (none: no e-mail alerts)."""

    host: str
    port: int = 25
    sender: str = "tokone@localhost"
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout_seconds: float = 10.0


class AlertSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The plugin's table (see the README's "Alerts")."""

    webhook_secret: str = ""
    """HMAC-SHA256 key of the `x-tokone-signature` header ("" : the `[server] secret`)."""
    webhook_url: str = ""
    """Where alerts of accounts without their own webhook go ("" : nowhere)."""
    private_webhooks: bool = False
    """Whether an account's own webhook (which its users set in the console) may point at a
    loopback, private, link-local or otherwise non-public address. Off, such a delivery fails
    at once without a request, so a user cannot make the gateway POST into the operator's
    network. The operator's `webhook_url` is always allowed."""
    email: str = ""
    """Where alerts of accounts without their own address go ("" : nowhere)."""
    smtp: SMTPSettings | None = None
    groups: dict[str, GroupAlerts] = msgspec.field(default_factory=dict)
    key_limit_percents: list[int] = msgspec.field(default_factory=lambda: [80, 100])
    """A key's period limit alerts when its spend reaches each of these percentages."""
    expiry_days: Annotated[float, msgspec.Meta(ge=0)] = 3.0
    """A key alerts once when it expires within this many days."""
    expiry_scan_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """How often the background task looks for keys about to expire."""
    scan_seconds: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """How often the background task looks for crossings and sends what is due."""
    settle_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """How long after an account's or key's last call it is still checked on every scan, so
    a charge the ledger writes after the first scan is still seen."""
    retry_seconds: list[float] = msgspec.field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0, 3600.0]
    )
    """Waits between delivery attempts; after the last one the delivery is marked failed."""
    timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """A webhook attempt's timeout."""

    def __post_init__(self) -> None:
        """Refuse a malformed threshold at load time."""
        try:
            for group in self.groups.values():
                if group.threshold is not None:
                    parse_amount(group.threshold)
        except AccountError as exc:
            raise ValueError(str(exc)) from None
        if not self.retry_seconds:
            raise ValueError("retry_seconds needs at least one wait")
