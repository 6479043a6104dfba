"""The ledger: balance holds at admission, capture + usage record after the call.

Money model
===========

``ledger_entries`` is append-only and an account's balance *is* the sum of its entries
(``accounts.balance`` is a running cache of that sum; ``tokone accounts check`` recomputes
it). Amounts are signed integer micro-units. The kinds:

* ``topup`` (> 0): money paid in (CLI, admin API, redemption code);
* ``capture`` (< 0): what one call cost, written with its usage record (``request_id`` set;
  a unique ``(request_id, kind)`` constraint makes a second capture of a call impossible);
* ``refund`` (> 0): money given back for a call or a complaint (an *inflow*, like a top-up);
* ``adjustment`` (either sign): an operator's correction, with a note.

So ``balance = topups + refunds + adjustments - |captures|``, and the sum of the captures
equals the sum of the usage records' costs, account by account.

Holds are *not* ledger entries: a hold reserves money without moving it, so it lives in the
``holds`` table (one row per in-flight call) and in the running ``accounts.held`` cache, and
the spendable balance is ``balance - held``. Keeping holds out of the ledger keeps the
ledger to movements of money (a hold + release pair would be two entries per call that sum
to zero) and lets a crashed process's holds be found and released by their age.

Admission and settlement
========================

Admission never waits on the database in the steady state. Each gateway process holds a
**lease** on each busy account: an amount it reserved in the database (one row in ``holds``,
``request_id = "lease:<process>:<account>"``, counted in ``accounts.held``), and it grants
each call's hold — the call's worst-case cost — from that lease in memory. Only when the
lease cannot cover a call does the process ask the database for more, with the conditional
reservation ``held = held + x WHERE balance - held >= need`` decided under the account's lock
(the writer locks the row with a no-op ``UPDATE … RETURNING balance - held``: the row lock on
PostgreSQL, the write lock on SQLite). It asks for room for ``LEASE_CALLS`` such calls, or
whatever the balance still allows, but never less than the call needs: if the balance cannot
cover even that, the call gets 402. So several gateway processes sharing a database never
over-commit an account, and a process hands back a lease it has not used for
``LEASE_IDLE_SECONDS`` (and everything at shutdown), so an account's idle money is not kept
from the other processes for long. The worst case is the prompt estimated at one token per
four bytes of the request body plus the output cap (the request's max tokens, else
``[billing] default_max_output_tokens``; none for embeddings and token counts), priced by the
`price` hook at the requested tier (for a tier the config does not list, such as ``auto``, at
the most expensive one).

After the call its hold goes back to the lease in memory, and one transaction later takes
the actual cost out of the lease and the balance, appends the ``capture`` entry and writes the
usage record, so "sum of captures = sum of usage-record costs" holds even across crashes. A
call that fails before any output (upstream 5xx, timeout, refusal) is captured at 0: its
hold is released and only a usage record is written. A
stream cut mid-way is charged for what was delivered (the pipeline counts it when the
upstream sent no usage).

Tolerance: an account can go below zero only when a call costs more than its hold — the
upstream counted more prompt tokens than the four-bytes-per-token estimate (images, non-Latin
text), produced more output than the assumed cap, or served a dearer tier than the requested
one. The balance therefore never drops below ``-sum(max(0, cost - hold))`` over the calls in
flight at once; when every call's cost is within its hold (as with the bundled mock and test
upstreams), it never drops below zero.

Writes and crashes
==================

All writes go through one writer thread per process that commits in groups: every queued
lease change and settlement in one transaction, taking account rows in id order so two processes
cannot deadlock, with a constant number of statements per account (one locking read, one
balance update, and multi-row inserts), so a batch costs about the same few round trips
however many calls it settles. The event loop waits on the database only when a lease must
grow. A batch that hits a transient error (a locked SQLite file, a PostgreSQL deadlock) is
retried; one bad job never sinks the rest of its batch. If the database cannot grow a lease,
the call is refused with 503 (``retry-after``), never with a misleading 402.

Database unreachable: calls whose hold the process's lease still covers keep being admitted
from memory (the key lookup serves keys already in its cache, see
:mod:`tokone.plugins.key_auth`), and their settlements are *kept*, not dropped: the writer
holds them and retries every ``DEFER_RETRY_SECONDS`` until the database answers again, then
writes them as usual. Their costs stay counted as "unsettled" in the lease's budget, so the
money admitted during an outage never exceeds what the lease had reserved in the database
before it — the outage can neither over-commit the account nor lose its charges, unless the
process dies before the database is back (those calls then go uncharged, as with any
unwritten batch). Calls the lease cannot cover need the database and get 503.

A live process refreshes its lease rows' timestamps at every sweep; lease rows older than
``[billing] hold_timeout_seconds`` — left by a process that was killed — are released by every
process's writer, at start-up and then periodically. A process killed with SIGKILL loses the
settlements it had queued but not committed (at most one group-commit window): those calls
go uncharged and their lease is released after the timeout, so no call is ever charged twice
and no money stays held forever.
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.types import Call, Outcome, Usage

BATCH_MAX = 512
STALE_SWEEP_SECONDS = 30.0
RETRY_DELAYS = (0.05, 0.2, 0.5)
LEASE_CALLS = 16
"""A lease grows by room for this many calls like the one that needed it (balance allowing)."""
LEASE_IDLE_SECONDS = 0.5
"""A lease with no call in flight for this long goes back to the account."""
LEASE_ATTEMPTS = 3
GROUP_COMMIT_SECONDS = 0.01
DEFER_RETRY_SECONDS = 1.0
"""While the database is unreachable, kept settlements are retried this often."""
DEFERRED_MAX = 100_000
"""Settlements kept at most while the database is unreachable (the rest are logged as lost)."""
RETRY_AFTER_SECONDS = 2
"""Settlements wait up to this long for company before they are committed."""
NO_OUTPUT_ENDPOINTS = frozenset(
    {
        "embeddings",
        "responses.input_tokens",
        "messages.count_tokens",
        "countTokens",
        "embedContent",
        "batchEmbedContents",
    }
)
"""Endpoints that generate no output tokens: their hold covers the prompt only."""

_LOCK = text("UPDATE accounts SET held = held WHERE id = :account_id RETURNING balance - held")
_MOVE = text(
    "UPDATE accounts SET balance = balance - :cost, held = held + :held WHERE id = :account_id"
)
_LEASE = text("SELECT amount FROM holds WHERE request_id = :lease_id")
_INSERT_LEASE = text(
    "INSERT INTO holds (request_id, account_id, amount, created_at) "
    "VALUES (:lease_id, :account_id, :amount, :now)"
)
_UPDATE_LEASE = text(
    "UPDATE holds SET amount = :amount, created_at = :now WHERE request_id = :lease_id"
)
_DELETE_HOLD = text("DELETE FROM holds WHERE request_id = :request_id")
_CAPTURE = text(
    "INSERT INTO ledger_entries (account_id, kind, amount, request_id, actor, note, created_at) "
    "VALUES (:account_id, 'capture', :amount, :request_id, 'gateway', '', :now)"
)
_USAGE = text(
    "INSERT INTO usage_records (request_id, account_id, key_id, endpoint, model, provider, "
    "upstream_model, input_tokens, cached_input_tokens, output_tokens, estimated, cost, "
    "multiplier, tier, status, latency_ms, created_at) VALUES (:request_id, :account_id, "
    ":key_id, :endpoint, :model, :provider, :upstream_model, :input_tokens, "
    ":cached_input_tokens, :output_tokens, :estimated, :cost, :multiplier, :tier, :status, "
    ":latency_ms, :now)"
)
_STALE = text(
    "SELECT request_id, account_id, amount FROM holds WHERE created_at < :cutoff "
    "ORDER BY account_id"
)
_OWN = text(
    "SELECT request_id, account_id, amount FROM holds WHERE request_id LIKE :prefix "
    "ORDER BY account_id"
)
_HEARTBEAT = text("UPDATE holds SET created_at = :now WHERE request_id LIKE :prefix")
_RELEASE = text("UPDATE accounts SET held = held - :amount WHERE id = :account_id")


@dataclass(slots=True)
class _LeaseJob:
    """Grow the lease by `want` (at least `need`, or nothing) if the balance allows."""

    account_id: int
    need: int
    want: int
    future: asyncio.Future[int | None]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _SettleJob:
    """Capture a finished call's cost from the lease and write its usage record."""

    account_id: int
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _TrimJob:
    """Give `amount` of the lease back to the account."""

    account_id: int
    amount: int


_Job = _LeaseJob | _SettleJob | _TrimJob


@dataclass(slots=True)
class Report:
    """What one batch did to one account's lease, for the process's in-memory budget."""

    account_id: int
    lease: int | None
    """The lease's amount after the batch (None: unchanged, the batch failed)."""
    settled: int = 0
    """Costs that left the in-memory 'unsettled' sum (written, or lost)."""
    trimmed: int = 0
    """Trim requests answered (the amount asked, whatever was released)."""


class LedgerWriter:
    """One thread that applies lease changes and settlements in grouped commits.

    `report` is called (from the writer thread) with a :class:`Report` per account per
    batch; a lease job's future gets the amount granted (0: the balance cannot cover the
    need) or None (the database could not be written).
    """

    def __init__(
        self,
        engine: Engine,
        hold_timeout: float,
        report: Callable[[list[Report]], None] | None = None,
    ) -> None:
        self.engine = engine
        self.hold_timeout = hold_timeout
        self.report = report or (lambda reports: None)
        self.lease_prefix = f"lease:{os.getpid()}:{secrets.token_hex(4)}:"
        self.sweep_every = min(STALE_SWEEP_SECONDS, max(hold_timeout / 2, 0.25))
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.log = structlog.get_logger("tokone")
        self._thread = threading.Thread(target=self._run, name="tokone-ledger", daemon=True)
        self._next_sweep = 0.0
        self._deferred: list[_SettleJob] = []
        self._retry_deferred_at = 0.0

    def lease_id(self, account_id: int) -> str:
        """This process's lease row for `account_id`."""
        return f"{self.lease_prefix}{account_id}"

    def start(self) -> None:
        """Start the writer thread (it releases stale holds first)."""
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued, give every lease back, then stop the thread."""
        self.queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, job: _Job) -> None:
        """Queue a job (thread-safe)."""
        self.queue.put(job)

    def _run(self) -> None:
        while True:
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.sweep_every
                self._guarded(self.heartbeat)
                self._guarded(self.release_stale)
            wake = self._next_sweep
            if self._deferred:
                wake = min(wake, self._retry_deferred_at)
            try:
                batch: list[_Job | None] = [
                    self.queue.get(timeout=max(wake - time.monotonic(), 0.01))
                ]
            except queue.Empty:
                batch = []
            if batch:
                self._collect(batch)
            jobs = [j for j in batch if j is not None]
            if self._deferred and (None in batch or time.monotonic() >= self._retry_deferred_at):
                jobs = [*self._deferred, *jobs]
                self._deferred = []
            if jobs:
                self._write(jobs)
            if None in batch:
                for job in self._deferred:
                    self.log.error("ledger_settlement_lost", **job.row)
                self._guarded(self.release_own)
                return

    def _collect(self, batch: list[_Job | None]) -> None:
        """Add what is queued to `batch`; when nobody waits on it (no lease job), keep
        collecting for up to GROUP_COMMIT_SECONDS so quiet traffic commits in groups too."""
        deadline = time.monotonic() + GROUP_COMMIT_SECONDS
        urgent = any(not isinstance(j, _SettleJob | _TrimJob) for j in batch)
        while len(batch) < BATCH_MAX:
            wait = 0.0 if urgent else deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                return
            batch.append(job)
            urgent = urgent or not isinstance(job, _SettleJob | _TrimJob)

    def _write(self, jobs: list[_Job]) -> None:
        # Account order: two processes' batches then lock account rows in the same order.
        jobs.sort(key=lambda j: j.account_id)
        grants: list[tuple[_LeaseJob, int | None]] = []
        reports: list[Report] = []
        if self._write_with_retries(jobs, grants, reports):
            pass
        elif not self.reachable():
            # The database is away: keep the settlements, refuse lease growth, retry later.
            for job in jobs:
                if isinstance(job, _LeaseJob):
                    grants.append((job, None))
                elif isinstance(job, _TrimJob):
                    reports.append(Report(job.account_id, None, trimmed=job.amount))
                elif len(self._deferred) < DEFERRED_MAX:
                    self._deferred.append(job)
                else:
                    self.log.error("ledger_settlement_lost", **job.row)
                    reports.append(Report(job.account_id, None, settled=job.row["cost"]))
            if self._deferred:
                self.log.warning("ledger_settlements_deferred", count=len(self._deferred))
            self._retry_deferred_at = time.monotonic() + DEFER_RETRY_SECONDS
        else:
            # One bad job must not sink the others: redo them one transaction each.
            grants, reports = [], []
            for job in jobs:
                if self._write_with_retries([job], grants, reports):
                    continue
                if isinstance(job, _LeaseJob):
                    grants.append((job, None))
                elif isinstance(job, _SettleJob):
                    self.log.error("ledger_settlement_lost", **job.row)
                    reports.append(Report(job.account_id, None, settled=job.row["cost"]))
                else:
                    reports.append(Report(job.account_id, None, trimmed=job.amount))
        self.report(reports)
        for lease, granted in grants:
            lease.loop.call_soon_threadsafe(_resolve, lease.future, granted)

    def _write_with_retries(
        self,
        jobs: list[_Job],
        grants: list[tuple[_LeaseJob, int | None]],
        reports: list[Report],
    ) -> bool:
        for delay in (*RETRY_DELAYS, None):
            staged_grants: list[tuple[_LeaseJob, int | None]] = []
            staged_reports: list[Report] = []
            try:
                with self.engine.begin() as conn:
                    now = time.time()
                    for account_id, grouped in groupby(jobs, key=lambda j: j.account_id):
                        staged_reports.append(
                            self._account_batch(conn, account_id, list(grouped), now, staged_grants)
                        )
            except IntegrityError as exc:  # a duplicate settlement: retrying cannot help
                self.log.warning("ledger_batch_rejected", jobs=len(jobs), error=repr(exc))
                return False
            except OperationalError as exc:  # locked, deadlocked, or the database is away
                if delay is None:
                    self.log.error("ledger_write_failed", jobs=len(jobs), error=repr(exc))
                    return False
                time.sleep(delay)
                continue
            except Exception as exc:
                self.log.error("ledger_write_failed", jobs=len(jobs), error=repr(exc))
                return False
            grants.extend(staged_grants)
            reports.extend(staged_reports)
            return True
        return False

    def _account_batch(
        self,
        conn: Connection,
        account_id: int,
        jobs: list[_Job],
        now: float,
        grants: list[tuple[_LeaseJob, int | None]],
    ) -> Report:
        """One account's share of a batch: grow, spend and trim its lease, in a few statements.

        Lease growth is decided under the account's lock against ``balance - held``; costs
        are taken out of the balance and out of the lease (never below zero: a call that cost
        more than its hold spends the difference from the balance alone).
        """
        key = {"lease_id": self.lease_id(account_id), "account_id": account_id}
        leases = [j for j in jobs if isinstance(j, _LeaseJob)]
        settles = [j for j in jobs if isinstance(j, _SettleJob)]
        asked_trim = sum(j.amount for j in jobs if isinstance(j, _TrimJob))
        available = conn.execute(_LOCK, key).scalar() if leases else None
        found = conn.execute(_LEASE, key).scalar()
        lease = found or 0
        held = 0
        for job in leases:
            granted = 0
            if available is not None and job.need <= available:
                granted = min(max(job.want, job.need), available)
                available -= granted
            lease += granted
            held += granted
            grants.append((job, granted))
        cost = sum(job.row["cost"] for job in settles)
        from_lease = min(cost, lease)
        lease -= from_lease
        trimmed = min(asked_trim, lease)
        lease -= trimmed
        held -= from_lease + trimmed
        if cost or held:
            conn.execute(_MOVE, {"cost": cost, "held": held, "account_id": account_id})
        if found is None and lease > 0:
            conn.execute(_INSERT_LEASE, {**key, "amount": lease, "now": now})
        elif found is not None and lease > 0:
            conn.execute(_UPDATE_LEASE, {**key, "amount": lease, "now": now})
        elif found is not None:
            conn.execute(_DELETE_HOLD, {"request_id": key["lease_id"]})
        captures = [
            {
                "account_id": account_id,
                "amount": -j.row["cost"],
                "request_id": j.row["request_id"],
                "now": now,
            }
            for j in settles
            if j.row["cost"]
        ]
        if captures:
            conn.execute(_CAPTURE, captures)
        if settles:
            conn.execute(_USAGE, [{**job.row, "now": now} for job in settles])
        return Report(account_id, lease, settled=cost, trimmed=asked_trim)

    def reachable(self) -> bool:
        """Whether the database answers a `SELECT 1` now."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    def heartbeat(self) -> None:
        """Mark this process's leases as alive, so no other process's sweep releases them."""
        with self.engine.begin() as conn:
            conn.execute(_HEARTBEAT, {"now": time.time(), "prefix": self.lease_prefix + "%"})

    def release_stale(self) -> int:
        """Release holds older than the timeout (left by a crashed process); return how many.

        Safe with several processes sweeping at once: a hold is released only by whoever
        deletes its row.
        """
        return self._release(_STALE, {"cutoff": time.time() - self.hold_timeout}, "stale")

    def release_own(self) -> int:
        """Give every lease of this process back (at shutdown)."""
        return self._release(_OWN, {"prefix": self.lease_prefix + "%"}, "own")

    def _release(self, query: Any, params: dict[str, Any], which: str) -> int:
        released = 0
        with self.engine.begin() as conn:
            for request_id, account_id, amount in conn.execute(query, params).all():
                if conn.execute(_DELETE_HOLD, {"request_id": request_id}).rowcount == 1:
                    conn.execute(_RELEASE, {"amount": amount, "account_id": account_id})
                    released += 1
        if released and which == "stale":
            self.log.warning("stale_holds_released", count=released)
        return released

    def _guarded(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # the database is down: log and go on
            self.log.error("ledger_sweep_failed", error=repr(exc))


def _resolve(future: asyncio.Future[int | None], granted: int | None) -> None:
    if not future.done():
        future.set_result(granted)


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
        assert call.principal is not None
        for _ in range(LEASE_ATTEMPTS):
            while budget.growing is not None and not budget.growing.done():
                await asyncio.shield(budget.growing)  # one growth at a time per account
            if budget.available >= amount:
                break
            need = amount - budget.available
            budget.growing = self.loop.create_future()
            growing = budget.growing
            self.writer.submit(
                _LeaseJob(
                    call.principal.account_id,
                    need,
                    max(need, amount * LEASE_CALLS),
                    growing,
                    self.loop,
                )
            )
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
        budget.in_flight += amount
        call.hold = amount

    def settle(self, account_id: int, hold: int, row: dict[str, Any]) -> None:
        """A call finished: its hold goes back to the lease, its cost waits to be written."""
        budget = self.budget(account_id)
        budget.in_flight -= hold
        budget.unsettled += row["cost"]
        if budget.in_flight == 0:
            budget.idle_since = time.monotonic()
        self.writer.submit(_SettleJob(account_id, row))

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
                    self.writer.submit(_TrimJob(account_id, spare))

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


def worst_case_cost(call: Call, gateway: Gateway) -> int:
    """What the call can cost at most: its prompt estimate plus the output cap, priced.

    A model the pricing policy marks as unpriced is refused (403) unless
    `[billing] allow_unpriced` is set.
    """
    billing = gateway.config.billing
    cap = call.max_output_tokens
    if cap is None or cap <= 0:  # ingress refuses negatives; never let one shrink the hold
        cap = billing.default_max_output_tokens
    cap *= call.choices
    if call.endpoint in NO_OUTPUT_ENDPOINTS:
        cap = 0
    estimate = call.input_estimate
    tier = call.service_tier
    if tier is not None and tier not in billing.service_tiers and billing.service_tiers:
        tier = max(billing.service_tiers, key=billing.service_tiers.__getitem__)
    usage = Usage(input_tokens=estimate, output_tokens=cap, service_tier=tier)
    charge = gateway.hook.price(call=call, usage=usage, gateway=gateway)
    if charge is None:
        return 0
    if charge.detail.get("unpriced") and not billing.allow_unpriced:
        raise GatewayError(
            "model_not_allowed",
            f"The model '{call.model}' has no price on this gateway yet; the operator must add "
            f'[prices."{call.model}"] to tokone.toml (or set [billing] allow_unpriced).',
            param="model",
        )
    return max(0, charge.amount)


@hookimpl(trylast=True)
def admit(call: Call, gateway: Gateway) -> Awaitable[None] | None:
    """Hold the worst-case cost; refuse with 402 when the available balance cannot cover it.

    trylast: every cheaper check (model allowed, rate limits) refuses before money is held.
    In the steady state this returns None: the hold comes from the process's lease.
    """
    if call.principal is None:
        return None
    amount = worst_case_cost(call, gateway)
    if amount <= 0:
        return None
    return leases(gateway).take(call, amount)


@hookimpl(tryfirst=True)
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Return the hold to the lease and queue the capture and the usage record.

    tryfirst: settlement runs before every other `meter` implementation (which the core
    runs each in isolation, so none of them can keep a call from being settled).
    """
    principal = call.principal
    if principal is None:
        return
    usage, charge = outcome.usage, outcome.charge
    leases(gateway).settle(
        principal.account_id,
        call.hold,
        {
            "request_id": call.request_id,
            "account_id": principal.account_id,
            "key_id": principal.key_id,
            "endpoint": call.endpoint,
            "model": call.model,
            "provider": outcome.provider,
            "upstream_model": outcome.upstream_model,
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "estimated": usage.estimated,
            "cost": charge.amount if charge else 0,
            "multiplier": charge.multiplier if charge else 1.0,
            "tier": charge.tier if charge else (call.service_tier or "default"),
            "status": outcome.status,
            "latency_ms": outcome.latency_ms,
        },
    )
    call.hold = 0


@hookimpl
def startup(gateway: Gateway) -> None:
    """Start the writer, which first releases holds a crashed process left behind."""
    leases(gateway)


@hookimpl
def shutdown(gateway: Gateway) -> None:
    """Write every pending settlement and give the leases back before the process exits."""
    found = gateway.state.pop("ledger", None)
    if found is not None:
        found.stop()
