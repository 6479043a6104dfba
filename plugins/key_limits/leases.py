"""Spend-limit leases: the in-memory side, the same hold logic as the ledger's balance.

Each process keeps a :class:`~tokone.plugins.ledger.leases.Budget` per limit and period it
serves: the lease it reserved in ``spend_holds`` minus the holds of calls in flight, the
costs not yet written and what it asked back. A call's hold (its worst-case cost, the same
amount the ledger holds on the balance) comes from that budget in memory; only when it
cannot cover the call is the database asked to grow the lease (402 when the limit's room
cannot, 503 when the database does not answer). Settlements and trims are written in
groups every ``FLUSH_SECONDS``. All database work runs on one worker thread per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import structlog
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.plugins.key_limits import store
from tokone.plugins.ledger.leases import LEASE_CALLS, LEASE_IDLE_SECONDS, Budget

FLUSH_SECONDS = 0.02
SWEEP_SECONDS = 5.0
RETRY_AFTER_SECONDS = 2


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit a call must fit: where its spend is counted, and how much room it has."""

    scope: str
    """``key:<id>`` or ``account:<id>``."""
    period: str
    """The period label (``total``, ``day:2026-12-02@UTC``, ...)."""
    amount: int
    refusal: str
    """The 402 message when the limit has no room for the call."""


def _landed(budget: Budget, done: asyncio.Future[Any]) -> None:
    """A lease growth finished: add its grant to the budget (nothing when it failed)."""
    if budget.growing is done:
        budget.growing = None
    if not done.cancelled() and done.exception() is None:
        budget.lease += done.result()


class SpendLeases:
    """Per-limit budgets of this process and the worker that writes them (event loop only)."""

    def __init__(self, gateway: Gateway) -> None:
        self.engine = gateway.engine
        self.hold_timeout = gateway.config.billing.hold_timeout_seconds
        self.budgets: dict[tuple[str, str], Budget] = {}
        self.prefix = f"spend:{os.getpid()}:{secrets.token_hex(4)}:"
        self.loop = asyncio.get_running_loop()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="tokone-spend")
        self.pending: dict[tuple[str, str], store.Settlement] = {}
        self.log = structlog.get_logger("tokone")
        self._task = self.loop.create_task(self._flush_forever())

    def lease_id(self, scope: str, period: str) -> str:
        """This process's lease row for one limit period."""
        return f"{self.prefix}{scope}:{period}"

    def budget(self, scope: str, period: str) -> Budget:
        """The budget of one limit period (empty until a lease is taken)."""
        found = self.budgets.get((scope, period))
        if found is None:
            found = self.budgets[(scope, period)] = Budget(idle_since=time.monotonic())
        return found

    async def take(self, limits: list[Limit], amount: int) -> list[tuple[str, str]]:
        """Hold `amount` under every limit, or none of them (raising the refusal)."""
        taken: list[tuple[str, str]] = []
        try:
            for limit in limits:
                budget = self.budget(limit.scope, limit.period)
                await self._take_one(limit, budget, amount)
                taken.append((limit.scope, limit.period))
        except BaseException:
            self.give_back(taken, amount)
            raise
        return taken

    async def _take_one(self, limit: Limit, budget: Budget, amount: int) -> None:
        for _ in range(3):
            while budget.growing is not None and not budget.growing.done():
                with contextlib.suppress(Exception):  # one growth at a time per limit
                    await asyncio.shield(budget.growing)
            if budget.available >= amount:
                budget.in_flight += amount
                return
            need = amount - budget.available
            growing = self.loop.run_in_executor(
                self.worker,
                store.grow,
                self.engine,
                self.lease_id(limit.scope, limit.period),
                limit.scope,
                limit.period,
                limit.amount,
                need,
                max(need, amount * LEASE_CALLS),
            )
            budget.growing = cast("asyncio.Future[int | None]", growing)
            # The grant joins the budget when the database answers, even if this call was
            # cancelled meanwhile (the client left): no lease row is ever lost track of.
            growing.add_done_callback(partial(_landed, budget))
            try:
                granted = await asyncio.shield(growing)
            except Exception as exc:
                self.log.warning("spend_lease_failed", scope=limit.scope, error=repr(exc)[:300])
                raise GatewayError(
                    "unavailable",
                    "The gateway cannot reach its database; try again shortly.",
                    headers={"retry-after": str(RETRY_AFTER_SECONDS)},
                ) from None
            if granted == 0:
                raise GatewayError("insufficient_balance", limit.refusal)
        raise GatewayError("insufficient_balance", limit.refusal)

    def give_back(self, taken: list[tuple[str, str]], hold: int, cost: int = 0) -> None:
        """A call finished (or was refused): its hold returns, its cost waits to be written."""
        for scope, period in taken:
            budget = self.budget(scope, period)
            budget.in_flight -= hold
            budget.unsettled += cost
            if budget.in_flight == 0:
                budget.idle_since = time.monotonic()
            if cost:
                item = self.pending.setdefault(
                    (scope, period),
                    store.Settlement(self.lease_id(scope, period), scope, period),
                )
                item.cost += cost

    async def _flush_forever(self) -> None:
        next_sweep = 0.0
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + min(SWEEP_SECONDS, self.hold_timeout / 2)
                    await self.loop.run_in_executor(
                        self.worker, store.sweep, self.engine, self.prefix, self.hold_timeout
                    )
                await self.flush()
            except Exception as exc:  # the database is away: keep the settlements, retry
                self.log.warning("spend_flush_failed", error=repr(exc)[:300])
                await asyncio.sleep(1.0)

    def _queue_trims(self) -> None:
        cutoff = time.monotonic() - LEASE_IDLE_SECONDS
        for (scope, period), budget in list(self.budgets.items()):
            spare = budget.available
            if budget.in_flight == 0 and budget.idle_since <= cutoff and spare > 0:
                budget.trimming += spare
                item = self.pending.setdefault(
                    (scope, period),
                    store.Settlement(self.lease_id(scope, period), scope, period),
                )
                item.trim += spare
            elif (
                budget.lease == budget.in_flight == budget.unsettled == budget.trimming == 0
                and budget.growing is None
                and (scope, period) not in self.pending
            ):
                del self.budgets[(scope, period)]  # nothing left to track (an old period)

    async def flush(self) -> None:
        """Write the queued costs and trims in one transaction and update the budgets."""
        self._queue_trims()
        if not self.pending:
            return
        batch = list(self.pending.values())
        self.pending = {}
        try:
            results = await self.loop.run_in_executor(self.worker, store.write, self.engine, batch)
        except BaseException:
            for item in batch:  # keep them for the next attempt (costs), answer the trims
                budget = self.budget(item.scope, item.period)
                budget.trimming -= item.trim
                item.trim = 0
                if item.cost:
                    kept = self.pending.setdefault((item.scope, item.period), item)
                    if kept is not item:
                        kept.cost += item.cost
            raise
        ordered = sorted(batch, key=lambda s: (s.scope, s.period))
        for item, (taken, trimmed) in zip(ordered, results, strict=True):
            budget = self.budget(item.scope, item.period)
            budget.lease -= taken + trimmed
            budget.unsettled -= item.cost
            budget.trimming -= item.trim

    async def stop(self) -> None:
        """Write what is queued, give the leases back, stop the worker."""
        self._task.cancel()
        try:
            await self.flush()
            await self.loop.run_in_executor(
                self.worker, store.release_own, self.engine, self.prefix
            )
        except Exception as exc:
            self.log.warning("spend_stop_failed", error=repr(exc)[:300])
        self.worker.shutdown(wait=True)
