"""Leases: the in-memory side of the ledger, which admits calls without the database.

Each gateway process keeps one :class:`Budget` per busy account: the lease it reserved in
the database, minus the holds of the calls in flight, the costs not yet written and what it
asked back. A call's hold comes from that budget in memory; only when it cannot cover the
call is the writer asked to grow the lease (402 if the balance cannot, 503 if the database
cannot answer). A lease idle for ``LEASE_IDLE_SECONDS`` is trimmed back to the account.
Runs on the event loop only; the writer reports back through ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.types import Call
from tokone.plugins.ledger.jobs import LeaseJob, Report, SettleJob, TrimJob
from tokone.plugins.ledger.writer import LedgerWriter

LEASE_CALLS = 16
"""A lease grows by room for this many calls like the one that needed it (balance allowing)."""
LEASE_IDLE_SECONDS = 0.5
"""A lease with no call in flight for this long goes back to the account."""
LEASE_ATTEMPTS = 3
RETRY_AFTER_SECONDS = 2
"""The `retry-after` of a 503 when the database cannot grow a lease."""


@dataclass(slots=True)
class Budget:
    """One account's money this process may hold for calls without asking the database."""

    lease: int = 0
    """Reserved in the database for this process (its lease row)."""
    in_flight: int = 0
    """Holds of the calls running now, taken from the lease."""
    unsettled: int = 0
    """Costs of finished calls not yet written (still inside the lease)."""
    trimming: int = 0
    """Asked back from the lease, not yet answered."""
    idle_since: float = 0.0
    growing: asyncio.Future[int | None] | None = None
    waiting: int = 0
    """Holds of the calls waiting for the lease to grow: the next growth asks for all of them."""

    @property
    def available(self) -> int:
        """What new calls may still hold."""
        return self.lease - self.in_flight - self.unsettled - self.trimming


class Leases:
    """The in-memory side of the ledger: per-account budgets of this process (event loop only)."""

    def __init__(self, gateway: Gateway) -> None:
        self.budgets: dict[int, Budget] = {}
        self.loop = asyncio.get_running_loop()
        self.writer = LedgerWriter(
            gateway.engine, gateway.config.billing.hold_timeout_seconds, self._reports
        )
        self.writer.start()
        self._trimmer = self.loop.create_task(self._trim_idle_forever())

    def budget(self, account_id: int) -> Budget:
        """The budget of `account_id` (empty until a lease is taken)."""
        found = self.budgets.get(account_id)
        if found is None:
            found = self.budgets[account_id] = Budget(idle_since=time.monotonic())
        return found

    def take(self, call: Call, amount: int) -> Awaitable[None] | None:
        """Hold `amount` for `call`: from the lease now if it covers it, else after growing it."""
        assert call.principal is not None
        budget = self.budget(call.principal.account_id)
        growing = budget.growing
        if (growing is None or growing.done()) and budget.available >= amount:
            budget.in_flight += amount
            call.hold = amount
            return None
        return self._take_after_growing(call, budget, amount)

    async def _take_after_growing(self, call: Call, budget: Budget, amount: int) -> None:
        budget.waiting += amount
        try:
            await self._wait_for_room(call, budget, amount)
        finally:
            budget.waiting -= amount
        budget.in_flight += amount
        call.hold = amount

    async def _wait_for_room(self, call: Call, budget: Budget, amount: int) -> None:
        """Wait until the lease covers `amount`, growing it (one growth at a time per account)
        by what every waiting call needs plus room for `LEASE_CALLS` more: a burst of N calls
        then costs a few growths, not N / LEASE_CALLS of them one after another."""
        assert call.principal is not None
        for _ in range(LEASE_ATTEMPTS):
            while budget.growing is not None and not budget.growing.done():
                await asyncio.shield(budget.growing)  # one growth at a time per account
            if budget.available >= amount:
                break
            need = amount - budget.available
            want = max(need, budget.waiting + amount * LEASE_CALLS - budget.available)
            budget.growing = self.loop.create_future()
            growing = budget.growing
            self.writer.submit(LeaseJob(call.principal.account_id, need, want, growing, self.loop))
            try:
                granted = await asyncio.shield(growing)
            finally:
                if budget.growing is growing:
                    budget.growing = None
            if granted is None:
                raise GatewayError(
                    "unavailable",
                    "The gateway cannot reach its database; try again shortly.",
                    headers={"retry-after": str(RETRY_AFTER_SECONDS)},
                )
            if granted == 0:
                raise insufficient_balance()
        else:
            raise insufficient_balance()

    def settle(self, account_id: int, hold: int, row: dict[str, Any]) -> None:
        """A call finished: its hold goes back to the lease, its cost waits to be written."""
        budget = self.budget(account_id)
        budget.in_flight -= hold
        budget.unsettled += row["cost"]
        if budget.in_flight == 0:
            budget.idle_since = time.monotonic()
        self.writer.submit(SettleJob(account_id, row))

    def _reports(self, reports: list[Report]) -> None:
        """From the writer thread: hand the batch's outcome to the event loop."""
        if reports:
            self.loop.call_soon_threadsafe(self._apply, reports)

    def _apply(self, reports: list[Report]) -> None:
        for report in reports:
            budget = self.budget(report.account_id)
            if report.lease is not None:
                budget.lease = report.lease
            budget.unsettled -= report.settled
            budget.trimming -= report.trimmed

    async def _trim_idle_forever(self) -> None:
        while True:
            await asyncio.sleep(LEASE_IDLE_SECONDS / 2)
            cutoff = time.monotonic() - LEASE_IDLE_SECONDS
            for account_id, budget in self.budgets.items():
                spare = budget.available
                if budget.in_flight == 0 and budget.idle_since <= cutoff and spare > 0:
                    budget.trimming += spare
                    self.writer.submit(TrimJob(account_id, spare))

    def stop(self) -> None:
        """Write what is queued, give the leases back, stop the writer."""
        self._trimmer.cancel()
        self.writer.stop()


def insufficient_balance() -> GatewayError:
    """The 402 for a call the account's balance cannot cover."""
    return GatewayError(
        "insufficient_balance",
        "You exceeded your current quota: the account's balance does not cover this "
        "request. Top up the account to continue.",
    )


def leases(gateway: Gateway) -> Leases:
    """This gateway's leases and ledger writer (created and started on first use)."""
    found = gateway.state.get("ledger")
    if found is None:
        found = gateway.state["ledger"] = Leases(gateway)
    return found
