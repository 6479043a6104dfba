"""Console users: people who sign in with an e-mail and a password, one account each.

Shared by the console (sign-up, settings) and the CLI (`tokone users ...`). Passwords are
hashed with argon2id (argon2-cffi); e-mails are stored lower-cased so they are unique
case-insensitively. Disabling a user or changing their password ends their sessions
(:mod:`tokone.core.domain.sessions`) in the same transaction.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select
from tokone.core.domain.accounts import create_account, get_account
from tokone.core.domain.errors import AccountError
from tokone.core.domain.ledger_entries import add_entry
from tokone.core.store.tables import Account, ConsoleSession, User

ROLES = ("user", "admin")
STATUSES = ("active", "disabled")
MAX_PASSWORD_LENGTH = 1024
"""Longer passwords are refused (hashing megabytes on request is a denial of service)."""

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash to verify against for an unknown e-mail (same work as a real check), made once."""
    return _hasher.hash(secrets.token_urlsafe(16))


"""Verified against when the e-mail is unknown, so both failures take the same time."""


class UserError(AccountError):
    """A user operation cannot be done; `status` as for :class:`AccountError`."""


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    """What a new password must satisfy."""

    min_length: int = 10


def normalise_email(email: str) -> str:
    """An e-mail as stored and compared: blanks dropped, lower-cased."""
    return email.strip().lower()


def check_email(email: str, allowed_domains: Collection[str] = ()) -> str:
    """The normalised e-mail, or UserError if it does not look like one (or its domain is
    not in `allowed_domains`, when that is not empty)."""
    email = normalise_email(email)
    local, _, domain = email.rpartition("@")
    if (
        not local
        or "." not in domain
        or len(email) > 254
        or any(c.isspace() or ord(c) < 32 for c in email)
    ):
        raise UserError(f"not an e-mail address: {email!r}")
    if allowed_domains and domain not in {d.lower().lstrip("@") for d in allowed_domains}:
        raise UserError(f"sign-up is not open to e-mail addresses at {domain}", 403)
    return email


def check_password(password: str, policy: PasswordPolicy) -> None:
    """Raise UserError if `password` breaks the policy."""
    if len(password) < policy.min_length:
        raise UserError(f"a password must have at least {policy.min_length} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"a password must have at most {MAX_PASSWORD_LENGTH} characters")


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (with its own random salt)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def get_user(session: Session, email: str) -> User:
    """The user with this e-mail, or UserError 404."""
    user = session.exec(select(User).where(User.email == normalise_email(email))).first()
    if user is None:
        raise UserError(f"no user with e-mail {normalise_email(email)!r}", 404)
    return user


def user_by_id(engine: Engine, user_id: int) -> User:
    """The user with `user_id`, or UserError 404."""
    with Session(engine) as session:
        user = session.get(User, user_id)
    if user is None:
        raise UserError(f"no user with id {user_id}", 404)
    return user


def list_users(engine: Engine) -> list[tuple[User, str]]:
    """Every user with the name of their account, by e-mail."""
    with Session(engine) as session:
        query = (
            select(User, Account.name)
            .join(Account, col(Account.id) == col(User.account_id))
            .order_by(col(User.email))
        )
        return [(user, name) for user, name in session.exec(query).all()]


def _account_name_for(session: Session, email: str) -> str:
    """A free account name for a new sign-up: the e-mail, or the e-mail and a suffix."""
    name = email
    while session.exec(select(Account.id).where(Account.name == name)).first() is not None:
        name = f"{email}-{secrets.token_hex(3)}"
    return name


def create_user(
    engine: Engine,
    email: str,
    password: str,
    *,
    policy: PasswordPolicy,
    display_name: str = "",
    role: str = "user",
    account: str | None = None,
    group: str = "default",
    known_groups: Collection[str] = (),
    credit: int = 0,
    actor: str = "console",
    allowed_domains: Collection[str] = (),
    verified: bool = True,
) -> User:
    """Create a user; with `account` they log in to that existing account, else a new
    account (named after the e-mail, in `group`) is made for them.

    A new account gets `credit` micro-units as a `topup` ledger entry noted "sign-up
    credit" (through :func:`tokone.core.domain.ledger_entries.add_entry`). `verified`: the
    e-mail counts as confirmed (False when the console is to send a confirmation link).
    Raises UserError 409 if the e-mail is taken.
    """
    email = check_email(email, allowed_domains)
    check_password(password, policy)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (expected user or admin)")
    if len(display_name) > 100:
        raise UserError("a display name must be at most 100 characters")
    password_hash = hash_password(password)
    with Session(engine) as session:
        if session.exec(select(User.id).where(User.email == email)).first() is not None:
            raise UserError(f"a user with e-mail {email!r} already exists", 409)
        name = account if account is not None else _account_name_for(session, email)
        if account is not None:
            get_account(session, account)
    if account is None:
        create_account(engine, name, group, known_groups)
    with Session(engine) as session:
        account_row = get_account(session, name)
        assert account_row.id is not None  # a row read from the database
        user = User(
            email=email,
            password_hash=password_hash,
            display_name=display_name.strip(),
            role=role,
            account_id=account_row.id,
            email_verified_at=time.time() if verified else None,
        )
        session.add(user)
        try:
            session.commit()
        except IntegrityError:
            raise UserError(f"a user with e-mail {email!r} already exists", 409) from None
        session.refresh(user)
    if account is None and credit > 0:
        add_entry(engine, name, "topup", credit, actor, note="sign-up credit")
    return user


def authenticate(engine: Engine, email: str, password: str) -> User | None:
    """The active user with this e-mail and password (their last login noted), else None.

    An unknown e-mail costs the same hashing time as a wrong password. A disabled user is
    returned as is (status `disabled`) only when the password is right, so the caller can say
    so without revealing anything to someone who does not know the password.
    """
    with Session(engine) as session:
        user = session.exec(select(User).where(User.email == normalise_email(email))).first()
        if user is None or len(password) > MAX_PASSWORD_LENGTH:
            verify_password(_dummy_hash(), password[:MAX_PASSWORD_LENGTH])
            return None
        if not verify_password(user.password_hash, password):
            return None
        if user.status == "active":
            user.last_login_at = time.time()
            if _hasher.check_needs_rehash(user.password_hash):
                user.password_hash = hash_password(password)
            session.add(user)
            session.commit()
            session.refresh(user)
        return user


def set_status(engine: Engine, email: str, status: str) -> User:
    """Enable or disable a user; disabling ends every one of their sessions at once."""
    if status not in STATUSES:
        raise UserError(f"unknown status {status!r} (expected active or disabled)")
    with Session(engine) as session:
        user = get_user(session, email)
        user.status = status
        session.add(user)
        if status == "disabled":
            session.execute(delete(ConsoleSession).where(col(ConsoleSession.user_id) == user.id))
        session.commit()
        session.refresh(user)
        return user


def set_role(engine: Engine, email: str, role: str) -> User:
    """Give a user the `admin` or the `user` role (`tokone users promote` / `demote`)."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r} (expected user or admin)")
    with Session(engine) as session:
        user = get_user(session, email)
        user.role = role
        session.add(user)
        session.commit()
        session.refresh(user)
        return user


def set_password(
    engine: Engine,
    user_id: int,
    password: str,
    policy: PasswordPolicy,
    *,
    keep_session: str | None = None,
) -> None:
    """Give a user a new password and end their sessions (all but the one whose token hash
    is `keep_session`, the browser that changed it)."""
    check_password(password, policy)
    password_hash = hash_password(password)
    with Session(engine) as session:
        user = session.get(User, user_id)
        if user is None:
            raise UserError(f"no user with id {user_id}", 404)
        user.password_hash = password_hash
        session.add(user)
        ended = delete(ConsoleSession).where(col(ConsoleSession.user_id) == user_id)
        if keep_session is not None:
            ended = ended.where(col(ConsoleSession.token_hash) != keep_session)
        session.execute(ended)
        session.commit()


def reset_password(engine: Engine, email: str, password: str, policy: PasswordPolicy) -> User:
    """An operator's password reset (`tokone users reset-password`): ends every session."""
    with Session(engine) as session:
        user = get_user(session, email)
    assert user.id is not None  # a row read from the database
    set_password(engine, user.id, password, policy)
    return user


def update_profile(
    engine: Engine, user_id: int, *, display_name: str | None = None, email: str | None = None
) -> User:
    """Change a user's display name and/or e-mail (UserError 409 if the e-mail is taken)."""
    with Session(engine) as session:
        user = session.get(User, user_id)
        if user is None:
            raise UserError(f"no user with id {user_id}", 404)
        if display_name is not None:
            if len(display_name) > 100:
                raise UserError("a display name must be at most 100 characters")
            user.display_name = display_name.strip()
        if email is not None and normalise_email(email) != user.email:
            user.email = check_email(email)
        session.add(user)
        try:
            session.commit()
        except IntegrityError:
            raise UserError(
                f"a user with e-mail {normalise_email(email or '')!r} exists", 409
            ) from None
        session.refresh(user)
        return user


def make_token(secret: str, purpose: str, user: User, lifetime_seconds: float) -> str:
    """A signed, expiring token for `purpose` (``verify`` or ``reset``) of `user`.

    Nothing is stored: the signature covers the user's id, e-mail and password hash, so a
    reset token stops working once the password has changed (it is used at most once) and a
    verification token once the e-mail has.
    """
    expires = int(time.time() + lifetime_seconds)
    return f"{user.id}.{expires}.{_signature(secret, purpose, user, expires)}"


def check_token(engine: Engine, secret: str, purpose: str, token: str) -> User:
    """The user a token of :func:`make_token` was made for, or UserError if it is invalid,
    expired or used."""
    parts = token.strip().split(".")
    invalid = UserError("this link is invalid or has expired; ask for a new one")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise invalid
    user_id, expires = int(parts[0]), int(parts[1])
    if expires < time.time():
        raise invalid
    with Session(engine) as session:
        user = session.get(User, user_id)
    if user is None or not hmac.compare_digest(
        parts[2], _signature(secret, purpose, user, expires)
    ):
        raise invalid
    return user


def _signature(secret: str, purpose: str, user: User, expires: int) -> str:
    message = f"{purpose}|{user.id}|{expires}|{user.email}|{user.password_hash}"
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def mark_verified(engine: Engine, user_id: int) -> bool:
    """Note that a user confirmed their e-mail; True the first time, False if already done."""
    with Session(engine) as session:
        user = session.get(User, user_id)
        if user is None:
            raise UserError(f"no user with id {user_id}", 404)
        if user.email_verified_at is not None:
            return False
        user.email_verified_at = time.time()
        session.add(user)
        session.commit()
        return True
