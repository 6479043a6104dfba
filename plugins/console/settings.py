"""The console's settings: the `[plugins.console]` table of `tokone.toml`."""

from __future__ import annotations

import msgspec
from tokone.core.domain.errors import AccountError
from tokone.core.domain.money import parse_amount
from tokone.core.domain.users import PasswordPolicy

SIGNUP_POLICIES = ("open", "invite", "closed")


class SmtpConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[plugins.console.smtp]`: where the console sends e-mail (off unless a feature is on).

    ``verify_email``: a new sign-up must open the link mailed to them before they can sign
    in (their sign-up credit is given then). ``password_reset``: "Forgot your password?" on
    the sign-in page mails a link (valid for an hour, used once).
    """

    host: str = ""
    port: int = 25
    username: str = ""
    password: str = ""
    starttls: bool = False
    sender: str = "TokOne <tokone@localhost>"
    timeout: float = 10.0
    verify_email: bool = False
    password_reset: bool = False

    def __post_init__(self) -> None:
        """An e-mail feature needs a server."""
        if (self.verify_email or self.password_reset) and not self.host:
            raise ValueError("smtp.host is required for verify_email or password_reset")


class ConsoleConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """`[plugins.console]`: who may sign up, what they get, how sessions behave.

    ``signup``: ``open`` (anyone), ``invite`` (only with an unused redemption code from
    ``tokone codes create``, which is redeemed into the new account) or ``closed`` (users are
    made with ``tokone users create``). ``signup_credit`` is a currency amount (``"1"``,
    ``"0.25"``) written as a ``topup`` ledger entry on each new sign-up's account.
    """

    signup: str = "open"
    signup_credit: str = "0"
    signup_group: str = "default"
    allowed_email_domains: list[str] = []
    """If not empty, only e-mail addresses at these domains may sign up."""
    min_password_length: int = 10
    secure_cookies: bool = False
    """Mark cookies Secure even when the request did not come over TLS (behind a proxy)."""
    session_days: float = 14.0
    login_attempts_per_minute: int = 10
    """Sign-in attempts allowed per e-mail address per minute."""
    login_attempts_per_minute_per_ip: int = 30
    public_url: str = ""
    """The base URL quick starts show (default: the URL the browser used)."""
    smtp: SmtpConfig = msgspec.field(default_factory=SmtpConfig)

    def __post_init__(self) -> None:
        """Refuse values no console can work with."""
        if self.signup not in SIGNUP_POLICIES:
            raise ValueError(f"signup must be one of {', '.join(SIGNUP_POLICIES)}")
        try:
            credit = parse_amount(self.signup_credit)
        except AccountError as exc:
            raise ValueError(f"signup_credit: {exc}") from None
        if credit < 0:
            raise ValueError("signup_credit must not be negative")
        if self.min_password_length < 8:
            raise ValueError("min_password_length must be at least 8")
        if self.session_days <= 0:
            raise ValueError("session_days must be positive")
        if self.login_attempts_per_minute < 1 or self.login_attempts_per_minute_per_ip < 1:
            raise ValueError("login attempts per minute must be at least 1")

    @property
    def credit_micro(self) -> int:
        """The sign-up credit in micro-units."""
        return parse_amount(self.signup_credit)

    @property
    def password_policy(self) -> PasswordPolicy:
        """The password rules for sign-up and password changes."""
        return PasswordPolicy(min_length=self.min_password_length)
