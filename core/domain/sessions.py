"""Console sessions: server-side, in the database, shared by every gateway process.

The browser holds a random token in an HttpOnly cookie; the database holds only its
SHA-256, the user and the expiry. So a sign-out, a password change or a disabled user
ends sessions everywhere at once, and sessions survive a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import time

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select
from tokone.core.store.tables import ConsoleSession, User

TOUCH_SECONDS = 60.0
"""`last_seen_at` is written at most this often per session (not on every page)."""


def token_hash(token: str) -> str:
    """What the database stores of a session token."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(
    engine: Engine, user_id: int, lifetime_seconds: float, ip: str = "", user_agent: str = ""
) -> str:
    """Start a session for `user_id`; return its token (for the cookie, never stored)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    with Session(engine) as session:
        session.add(
            ConsoleSession(
                token_hash=token_hash(token),
                user_id=user_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + lifetime_seconds,
                ip=ip[:64],
                user_agent=user_agent[:300],
            )
        )
        # expired sessions are removed as new ones are made: no background job needed
        session.execute(delete(ConsoleSession).where(col(ConsoleSession.expires_at) < now))
        session.commit()
    return token


def resolve(engine: Engine, token: str) -> User | None:
    """The active user a session token belongs to, or None (unknown, expired, disabled)."""
    if not token or len(token) > 200:
        return None
    digest = token_hash(token)
    now = time.time()
    with Session(engine) as session:
        found = session.exec(
            select(ConsoleSession, User)
            .join(User, col(User.id) == col(ConsoleSession.user_id))
            .where(ConsoleSession.token_hash == digest)
        ).first()
        if found is None:
            return None
        row, user = found
        if row.expires_at <= now or user.status != "active":
            return None
        if now - row.last_seen_at > TOUCH_SECONDS:
            row.last_seen_at = now
            session.add(row)
            session.commit()
            session.refresh(user)
        return user


def end_session(engine: Engine, token: str) -> None:
    """Sign out one browser."""
    with Session(engine) as session:
        session.execute(
            delete(ConsoleSession).where(col(ConsoleSession.token_hash) == token_hash(token))
        )
        session.commit()


def count_sessions(engine: Engine, user_id: int) -> int:
    """How many unexpired sessions a user has open."""
    with Session(engine) as session:
        rows = session.exec(
            select(ConsoleSession.token_hash).where(
                ConsoleSession.user_id == user_id, ConsoleSession.expires_at > time.time()
            )
        ).all()
        return len(rows)
