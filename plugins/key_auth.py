"""Key authentication: `sk-…` keys looked up by HMAC hash, cached in-process for a second.

The cache keeps a disable, revoke or rotate effective within a second on every process
without a database round trip per request; ``[plugins.key_auth] refresh_seconds`` sets that
second.

Database unreachable: a key that is not in the cache is refused with 503 (``retry-after``),
never with a raw 500 or a misleading 401. A key that *is* in the cache keeps being served
from its last good entry (re-checked against the database at most once a second) for up to
``[billing] hold_timeout_seconds`` after that entry was read: the ledger can admit such a
call only from the money its lease already reserved in the database, and it keeps the
call's settlement queued until the database is back (see :mod:`tokone.plugins.ledger`), so
nothing is charged twice and nothing spends past what was reserved. Past the hold timeout
other processes may release this process's lease as stale, so the entry is no longer used.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select
from tokone.core.config import RefreshSettings, refresh_seconds
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.store.tables import Account, ApiKey
from tokone.core.types import Principal

RETRY_AFTER_SECONDS = 2
_CacheEntry = tuple[float, Principal | None, float]
"""(expires at, the principal or None for an unknown key, when it was read) — monotonic."""


@hookimpl
def plugin_config_schema() -> type[RefreshSettings]:
    """`[plugins.key_auth] refresh_seconds`: how long a looked-up key is cached."""
    return RefreshSettings


def load_principal(engine: Engine, key_hash: str) -> Principal | None:
    """Read the key and its account from the database."""
    with Session(engine) as session:
        row = session.exec(
            select(ApiKey, Account)
            .join(Account, col(Account.id) == col(ApiKey.account_id))
            .where(ApiKey.key_hash == key_hash)
        ).first()
    if row is None:
        return None
    key, account = row
    assert key.id is not None and account.id is not None
    return Principal(
        key_id=key.id,
        account_id=account.id,
        account_name=account.name,
        group=account.group,
        key_name=key.name,
        models=tuple(m for m in key.models.split(",") if m),
        status=key.status,
        expires_at=key.expires_at,
        multiplier_override=account.multiplier_override,
        spend_limit=key.spend_limit,
        period_limit=key.period_limit,
        limit_period=key.limit_period,
        limit_timezone=key.limit_timezone,
        allowed_ips=tuple(r for r in key.allowed_ips.split(",") if r),
        account_budget=account.budget,
        account_budget_period=account.budget_period,
    )


def check_usable(principal: Principal) -> Principal:
    """Raise 403 for a disabled, revoked or expired key."""
    if principal.status != "enabled":
        raise GatewayError("forbidden", f"This API key is {principal.status}.")
    if principal.expires_at is not None and principal.expires_at <= time.time():
        raise GatewayError("forbidden", "This API key has expired.")
    return principal


@hookimpl
def authenticate(key: str, gateway: Gateway) -> Principal | Awaitable[Principal | None] | None:
    """Keys with the configured prefix, from the cache or (once per interval) the database."""
    if not key.startswith(gateway.config.server.key_prefix):
        return None
    cache: dict[str, _CacheEntry] = gateway.state.setdefault("key_auth", {})
    key_hash = gateway.hasher.hash(key)
    hit = cache.get(key_hash)
    if hit is not None and hit[0] > time.monotonic():
        return check_usable(hit[1]) if hit[1] is not None else None
    return _refresh(gateway, cache, key_hash)


async def _refresh(
    gateway: Gateway, cache: dict[str, _CacheEntry], key_hash: str
) -> Principal | None:
    now = time.monotonic()
    expires = now + refresh_seconds(gateway.plugin_config("key_auth"))
    try:
        principal = await asyncio.to_thread(load_principal, gateway.engine, key_hash)
    except DBAPIError as exc:
        stale = cache.get(key_hash)
        if stale is None or stale[2] + gateway.config.billing.hold_timeout_seconds < now:
            gateway.log.warning("key_lookup_failed", error=repr(exc)[:300])
            raise database_unavailable() from None
        # Serve the last good entry; ask the database again in an interval at the earliest.
        cache[key_hash] = (expires, stale[1], stale[2])
        principal = stale[1]
    else:
        if len(cache) > 100_000:
            cache.clear()
        cache[key_hash] = (expires, principal, now)
    return check_usable(principal) if principal is not None else None


def database_unavailable() -> GatewayError:
    """The 503 for a call that needs the database while it is unreachable."""
    return GatewayError(
        "unavailable",
        "The gateway cannot reach its database; try again shortly.",
        headers={"retry-after": str(RETRY_AFTER_SECONDS)},
    )
