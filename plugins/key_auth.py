"""Key authentication: `sk-…` keys looked up by HMAC hash, cached in-process for a second.

The cache keeps a disable, revoke or rotate effective within a second on every process
without a database round trip per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.models import Account, ApiKey
from tokone.core.types import Principal

CACHE_SECONDS = 1.0
_CacheEntry = tuple[float, Principal | None]


def load_principal(engine: Engine, key_hash: str) -> Principal | None:
    """Read the key and its account from the database."""
    with Session(engine) as session:
        row = session.exec(
            select(ApiKey, Account)
            .join(Account, Account.id == ApiKey.account_id)
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
    """Keys with the configured prefix, from the cache or (once a second) the database."""
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
    principal = await asyncio.to_thread(load_principal, gateway.engine, key_hash)
    if len(cache) > 100_000:
        cache.clear()
    cache[key_hash] = (time.monotonic() + CACHE_SECONDS, principal)
    return check_usable(principal) if principal is not None else None
