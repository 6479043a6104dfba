"""Rate limits: requests and tokens per minute per key, account and group; concurrency per key.

Configured in `tokone.toml`::

    [rate_limits]
    storage = "redis://127.0.0.1:6379/0"   # or "memory://" for a single process
    rpm = 600                              # per key
    tpm = 200000                           # per key
    account_rpm = 1200                     # all keys of an account together
    group_tpm = 2000000                    # all accounts of a group together
    max_concurrent = 20                    # requests one key may have in flight

    [rate_limits.groups.free]              # accounts in group "free"
    rpm = 20

    [rate_limits.keys."42"]                # key id 42 (`tokone keys list`)
    rpm = 5
    max_concurrent = 1

A key's limits are the defaults, overlaid by its group's, then its own, then whatever its
authentication plugin put in :attr:`Principal.limits` (same names); 0 lifts a limit.

How it counts (with the `limits` library, through its asyncio API so the event loop never
blocks; `memory://` for one process, Redis shared by every process):

* **Requests**: one hit per admitted call, moving window (or fixed window, `strategy`).
  Every bucket is tested first, so a call refused by one bucket consumes no other (barring a
  race); the hits themselves are atomic in the storage, so several processes sharing it
  never let more through than the limit.
* **Tokens**: the actual input + output tokens of a finished call are added in `meter`
  (fixed one-minute window, which records a call even when it overshoots); a call is refused
  at admission while the window is already at the limit. This needs no token estimate, and
  a minute's overshoot is at most the calls in flight when the limit was reached.
* **Concurrency**: a slot per call, taken at admission and given back in `meter`. Slots are
  leases (a sorted set in Redis) that lapse after `[billing] hold_timeout_seconds`, so the
  slots of a crashed process come back.

A refusal is a 429 ("rate_limited") in the caller's family's error shape with `retry-after`
(seconds until the window frees a slot) and OpenAI's `x-ratelimit-limit-requests`,
`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` (and `-tokens`) headers, which
admitted calls carry too (one window read per limit per call). If the storage is
unreachable, calls are admitted and the failure is logged: a rate-limit outage must not
become a full outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, cast

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from tokone.core.config import LimitSet, RateLimitsConfig
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome, Principal

# field -> (dimension, scope)
RULE_FIELDS: dict[str, tuple[str, str]] = {
    "rpm": ("requests", "key"),
    "tpm": ("tokens", "key"),
    "account_rpm": ("requests", "account"),
    "account_tpm": ("tokens", "account"),
    "group_rpm": ("requests", "group"),
    "group_tpm": ("tokens", "group"),
}
SLOT = "rate_limit_slot"

_ACQUIRE_SLOT = """
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('zremrangebyscore', KEYS[1], '-inf', now)
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[1]) then
    return 0
end
redis.call('zadd', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('expire', KEYS[1], math.ceil(tonumber(ARGV[2])))
return 1
"""


def effective_limits(config: RateLimitsConfig, principal: Principal) -> dict[str, int]:
    """The limits that apply to `principal`'s calls (only those set and non-zero)."""
    merged: dict[str, int] = {}
    layers: list[LimitSet | None] = [
        config,
        config.groups.get(principal.group),
        config.keys.get(str(principal.key_id)),
    ]
    for layer in layers:
        if layer is not None:
            for name in LimitSet.__struct_fields__:
                value = getattr(layer, name)
                if value is not None:
                    merged[name] = value
    merged.update(principal.limits)
    return {name: value for name, value in merged.items() if value}


@dataclass(frozen=True, slots=True)
class Rule:
    """One bucket a call counts against: a dimension, a scope and its identity."""

    dimension: str
    """`requests` or `tokens`."""
    scope: str
    """`key`, `account` or `group`."""
    ident: str
    item: RateLimitItem

    @property
    def identifiers(self) -> tuple[str, str, str]:
        """The storage identifiers of this bucket."""
        return (self.dimension, self.scope, self.ident)


@dataclass(frozen=True, slots=True)
class WindowState:
    """A bucket's limit, what is left of it, and when it frees up (Unix time)."""

    rule: Rule
    remaining: int
    reset: float


def go_duration(seconds: float) -> str:
    """A duration the way OpenAI's `x-ratelimit-reset-*` headers write it: `20ms`, `1s`, `6m0s`."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class MemorySlots:
    """Concurrency slots of one process: leases that lapse like the Redis ones."""

    errors: tuple[type[Exception], ...] = ()
    """What an outage of this storage raises besides `StorageError` and `OSError`: nothing."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease = lease_seconds
        self.used: dict[str, dict[str, float]] = {}

    async def acquire(self, key: str, member: str, limit: int) -> bool:
        """Take a slot for `member` if fewer than `limit` unexpired leases are taken."""
        now = time.monotonic()
        leases = self.used.setdefault(key, {})
        for stale in [m for m, until in leases.items() if until <= now]:
            del leases[stale]
        if len(leases) >= limit:
            return False
        leases[member] = now + self.lease
        return True

    async def release(self, key: str, member: str) -> None:
        """Give `member`'s slot back."""
        leases = self.used.get(key)
        if leases is not None:
            leases.pop(member, None)
            if not leases:
                del self.used[key]

    async def aclose(self) -> None:
        """Nothing to close."""


class RedisSlots:
    """Concurrency slots shared by every process: a sorted set of leases per key."""

    def __init__(self, url: str, prefix: str, lease_seconds: float) -> None:
        import redis.asyncio as aioredis  # only when Redis is configured: a slow import
        from redis.exceptions import RedisError

        self.errors: tuple[type[Exception], ...] = (RedisError,)
        """What an outage of Redis raises besides `StorageError` and `OSError`."""
        self.client = aioredis.Redis.from_url(url)
        self.prefix = prefix
        self.lease = lease_seconds
        self.script = self.client.register_script(_ACQUIRE_SLOT)

    async def acquire(self, key: str, member: str, limit: int) -> bool:
        """Take a slot for `member` if fewer than `limit` unexpired leases are taken."""
        name = f"{self.prefix}:slots:{key}"
        return bool(await self.script(keys=[name], args=[limit, self.lease, member]))

    async def release(self, key: str, member: str) -> None:
        """Give `member`'s slot back."""
        await self.client.zrem(f"{self.prefix}:slots:{key}", member)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self.client.aclose()


class RateLimiter:
    """The buckets of one gateway process, in memory or in a shared Redis."""

    def __init__(self, config: RateLimitsConfig, lease_seconds: float) -> None:
        self.config = config
        if config.storage.startswith("memory://"):
            storage = storage_from_string("async+memory://")
            self.slots: MemorySlots | RedisSlots = MemorySlots(lease_seconds)
        else:
            storage = storage_from_string(
                "async+" + config.storage,
                implementation="redispy",
                key_prefix=config.key_prefix,
                wrap_exceptions=True,
            )
            self.slots = RedisSlots(config.storage, config.key_prefix, lease_seconds)
        self.requests: MovingWindowRateLimiter | FixedWindowRateLimiter = (
            MovingWindowRateLimiter(storage)
            if config.strategy == "moving-window"
            else FixedWindowRateLimiter(storage)
        )
        self.tokens = FixedWindowRateLimiter(storage)
        self.errors: tuple[type[Exception], ...] = (StorageError, OSError, *self.slots.errors)
        """What a storage outage raises: calls are then admitted and the failure logged."""
        self.tasks: set[asyncio.Task[None]] = set()
        self._items: dict[int, RateLimitItem] = {}

    def item(self, amount: int) -> RateLimitItem:
        """The per-minute limit item for `amount` (cached)."""
        found = self._items.get(amount)
        if found is None:
            found = self._items[amount] = RateLimitItemPerMinute(amount, namespace="tokone")
        return found

    def rules(self, principal: Principal, limits: dict[str, int]) -> list[Rule]:
        """The buckets `principal`'s call counts against."""
        idents = {
            "key": str(principal.key_id),
            "account": str(principal.account_id),
            "group": principal.group,
        }
        return [
            Rule(dimension, scope, idents[scope], self.item(limits[name]))
            for name, (dimension, scope) in RULE_FIELDS.items()
            if name in limits
        ]

    def limiter(self, rule: Rule) -> MovingWindowRateLimiter | FixedWindowRateLimiter:
        """The strategy that counts `rule`'s dimension."""
        return self.requests if rule.dimension == "requests" else self.tokens

    async def window(self, rule: Rule) -> WindowState:
        """What is left of `rule`'s bucket and when it frees up."""
        stats = await self.limiter(rule).get_window_stats(rule.item, *rule.identifiers)
        return WindowState(rule, max(0, stats.remaining), stats.reset_time)

    async def admit(self, call: Call, principal: Principal, limits: dict[str, int]) -> None:
        """Count the call against its buckets and take a concurrency slot, or raise 429."""
        rules = self.rules(principal, limits)
        requests = [r for r in rules if r.dimension == "requests"]
        tokens = [r for r in rules if r.dimension == "tokens"]
        try:
            checks = await asyncio.gather(
                *(self.requests.test(r.item, *r.identifiers) for r in requests),
                *(self.window(r) for r in tokens),
            )
            for rule, ok in zip(requests, checks, strict=False):
                if not ok:
                    raise await self.refusal(call, rules, rule)
            for state in cast("list[WindowState]", checks[len(requests) :]):
                if state.remaining <= 0:
                    raise await self.refusal(call, rules, state.rule)
            hits = await asyncio.gather(
                *(self.requests.hit(r.item, *r.identifiers) for r in requests)
            )
            for rule, ok in zip(requests, hits, strict=True):
                if not ok:
                    raise await self.refusal(call, rules, rule)
            if rules:  # OpenAI sends its rate-limit state on every response, not only 429s
                states = await asyncio.gather(*(self.window(r) for r in rules))
                call.response_headers.update(rate_headers(states, time.time()))
            concurrent = limits.get("max_concurrent")
            if concurrent:
                key = str(principal.key_id)
                if not await self.slots.acquire(key, call.request_id, concurrent):
                    raise GatewayError(
                        "rate_limited",
                        f"Too many concurrent requests for this API key (limit {concurrent}). "
                        "Wait for one to finish and retry.",
                        headers={"retry-after": "1"},
                    )
                call.extra[SLOT] = key
        except self.errors as exc:
            _storage_failed(exc)

    async def refusal(self, call: Call, rules: list[Rule], refused: Rule) -> GatewayError:
        """The 429 for a call `refused` by one bucket, with OpenAI's rate-limit headers."""
        states = await asyncio.gather(*(self.window(r) for r in rules))
        now = time.time()
        headers = rate_headers(states, now, refused)
        state = next(s for s in states if s.rule == refused)
        wait = max(1, math.ceil(state.reset - now))
        headers["retry-after"] = str(wait)
        what = "requests" if refused.dimension == "requests" else "tokens"
        limit = refused.item.amount
        return GatewayError(
            "rate_limited",
            f"Rate limit reached for {call.model} on {what} per min ({refused.scope}): "
            f"Limit {limit}, Used {limit - state.remaining}. Please try again in {wait}s.",
            headers=headers,
        )

    def after(self, call: Call, principal: Principal, outcome: Outcome) -> None:
        """Give back the call's concurrency slot and count its tokens (in the background)."""
        slot = call.extra.pop(SLOT, None)
        tokens = outcome.usage.input_tokens + outcome.usage.output_tokens
        rules = []
        if tokens:
            limits = effective_limits(self.config, principal)
            rules = [r for r in self.rules(principal, limits) if r.dimension == "tokens"]
        if slot is None and not rules:
            return
        task = asyncio.get_running_loop().create_task(
            self._after(slot, call.request_id, rules, tokens)
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _after(self, slot: str | None, member: str, rules: list[Rule], tokens: int) -> None:
        try:
            if slot is not None:
                await self.slots.release(slot, member)
            for rule in rules:
                await self.tokens.hit(rule.item, *rule.identifiers, cost=tokens)
        except self.errors as exc:
            _storage_failed(exc)

    async def aclose(self) -> None:
        """Finish the background counting, then close the storage connections."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.slots.aclose()


def rate_headers(
    states: list[WindowState], now: float, refused: Rule | None = None
) -> dict[str, str]:
    """OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers: per
    dimension, the bucket that refused the call, else the one with the least left."""
    headers: dict[str, str] = {}
    for dimension in ("requests", "tokens"):
        mine = [s for s in states if s.rule.dimension == dimension]
        if not mine:
            continue
        tightest = next(
            (s for s in mine if s.rule == refused),
            min(mine, key=lambda s: (s.remaining, -s.reset)),
        )
        headers[f"x-ratelimit-limit-{dimension}"] = str(tightest.rule.item.amount)
        headers[f"x-ratelimit-remaining-{dimension}"] = str(tightest.remaining)
        headers[f"x-ratelimit-reset-{dimension}"] = go_duration(tightest.reset - now)
    return headers


def _storage_failed(exc: BaseException) -> None:
    import structlog

    structlog.get_logger("tokone").error("rate_limit_storage_failed", error=repr(exc))


def limiter(gateway: Gateway) -> RateLimiter:
    """This gateway's rate limiter (created on first use)."""
    found = gateway.state.get("rate_limit")
    if found is None:
        lease = float(gateway.config.billing.hold_timeout_seconds)
        found = gateway.state["rate_limit"] = RateLimiter(gateway.config.rate_limits, lease)
    return found


@hookimpl
def admit(call: Call, gateway: Gateway) -> Awaitable[None] | None:
    """Refuse (429) a call over its key's, account's or group's limits; take a slot."""
    principal = call.principal
    if principal is None:
        return None
    limits = effective_limits(gateway.config.rate_limits, principal)
    if not limits:
        return None
    return limiter(gateway).admit(call, principal, limits)


@hookimpl(tryfirst=True)
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Release the call's concurrency slot and count the tokens it used.

    tryfirst: it cannot fail, and a slot must come back even if a later `meter` raises.
    """
    if call.principal is not None and "rate_limit" in gateway.state:
        limiter(gateway).after(call, call.principal, outcome)


@hookimpl
async def shutdown(gateway: Gateway) -> None:
    """Count what is still being counted, then close the storage connections."""
    found: Any = gateway.state.pop("rate_limit", None)
    if found is not None:
        with contextlib.suppress(*found.errors):
            await found.aclose()
