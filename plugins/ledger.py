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

Admission holds the call's worst-case cost only if ``balance - held`` covers it, decided under
the account's lock: the writer locks the account with a no-op ``UPDATE … RETURNING balance -
held`` (the row lock on PostgreSQL, the write lock on SQLite), grants the batch's holds for
that account in order while they fit, and adds them to ``held`` before committing — the
conditional ``held = held + h WHERE balance - held >= h`` of every hold, decided for the whole
batch at once. So several gateway processes sharing a database never over-commit an
account. The worst case is the prompt estimated at one token per four bytes of the request
body plus the output cap (the request's max tokens, else ``[billing]
default_max_output_tokens``; none for embeddings and token counts), priced by the `price`
hook at the requested tier (for a tier the config does not list, such as ``auto``, at the
most expensive one).

After the call one transaction deletes the hold, appends the ``capture`` entry for the
actual cost and writes the usage record, so "sum of captures = sum of usage-record costs"
holds even across crashes. A call that fails before any output (upstream 5xx, timeout,
refusal) is captured at 0: its hold is released and only a usage record is written. A
stream cut mid-way is charged for what was delivered (the pipeline counts it when the
upstream sent no usage).

Tolerance: an account can go below zero only when a call costs more than its hold — the
upstream counted more prompt tokens than the four-bytes-per-token estimate (images, non-Latin
text), produced more output than the assumed cap, or served a dearer tier than the requested
one. The balance therefore never drops below ``-sum(max(0, cost - hold))`` over the calls in
flight at once; when every call's cost is within its hold (as with the bundled mock and test
upstreams), it never drops below zero. (A call still running when its hold times out, see
below, is settled normally but no longer backed by a hold: keep ``hold_timeout_seconds``
above the longest call.)

Writes and crashes
==================

All writes go through one writer thread per process that commits in groups: every queued
hold and settlement in one transaction, taking account rows in id order so two processes
cannot deadlock, with a constant number of statements per account (one locking read, one
balance update, and multi-row inserts), so a batch costs about the same few round trips
however many calls it settles. The event loop never waits on the database except for the
admission answer itself. A batch that hits a transient error (a locked SQLite file, a
PostgreSQL deadlock) is retried; one bad job never sinks the rest of its batch. If the
database cannot take a hold, the call is refused with 503, never with a misleading 402.

Holds older than ``[billing] hold_timeout_seconds`` — left by a process that was killed — are
released by every process's writer, at start-up and then periodically. A process killed with
SIGKILL loses the settlements it had queued but not committed (at most one group-commit
window): those calls go uncharged and their holds are released after the timeout, so no call
is ever charged twice and no money stays held forever.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

import structlog
from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.exc import IntegrityError, OperationalError
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.tokens import estimate_chars
from tokone.core.types import Call, Outcome, Usage

BATCH_MAX = 512
STALE_SWEEP_SECONDS = 30.0
RETRY_DELAYS = (0.05, 0.2, 0.5)
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
_ADD_HELD = text("UPDATE accounts SET held = held + :amount WHERE id = :account_id")
_INSERT_HOLD = text(
    "INSERT INTO holds (request_id, account_id, amount, created_at) "
    "VALUES (:request_id, :account_id, :amount, :now)"
)
_DELETE_HOLD = text("DELETE FROM holds WHERE request_id = :request_id")
_DELETE_HOLDS = text(
    "DELETE FROM holds WHERE request_id IN :request_ids RETURNING amount"
).bindparams(bindparam("request_ids", expanding=True))
_SETTLE = text(
    "UPDATE accounts SET balance = balance - :cost, held = held - :released WHERE id = :account_id"
)
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
_RELEASE = text("UPDATE accounts SET held = held - :amount WHERE id = :account_id")


@dataclass(slots=True)
class _HoldJob:
    request_id: str
    account_id: int
    amount: int
    future: asyncio.Future[bool | None]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _SettleJob:
    account_id: int
    hold: int
    row: dict[str, Any] = field(default_factory=dict)


_Job = _HoldJob | _SettleJob


class LedgerWriter:
    """One thread that applies holds and settlements to the database in grouped commits.

    A hold's answer is True (held), False (the balance does not cover it) or None (the
    database could not be written).
    """

    def __init__(self, engine: Engine, hold_timeout: float) -> None:
        self.engine = engine
        self.hold_timeout = hold_timeout
        self.sweep_every = min(STALE_SWEEP_SECONDS, max(hold_timeout / 2, 0.25))
        self.queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self.log = structlog.get_logger("tokone")
        self._thread = threading.Thread(target=self._run, name="tokone-ledger", daemon=True)
        self._next_sweep = 0.0

    def start(self) -> None:
        """Start the writer thread (it releases stale holds first)."""
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued, then stop the thread."""
        self.queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, job: _Job) -> None:
        """Queue a job (thread-safe)."""
        self.queue.put(job)

    def _run(self) -> None:
        while True:
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.sweep_every
                self._guarded(self.release_stale)
            try:
                job = self.queue.get(timeout=max(self._next_sweep - time.monotonic(), 0.01))
            except queue.Empty:
                continue
            batch = [job]
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            jobs = [j for j in batch if j is not None]
            if jobs:
                self._write(jobs)
            if None in batch:
                return

    def _write(self, jobs: list[_Job]) -> None:
        # Account order: two processes' batches then lock account rows in the same order.
        jobs.sort(key=lambda j: j.account_id)
        results: list[tuple[_HoldJob, bool | None]] = []
        if not self._write_with_retries(jobs, results):
            # One bad job must not sink the others: redo them one transaction each.
            results = []
            for job in jobs:
                one: list[tuple[_HoldJob, bool | None]] = []
                if self._write_with_retries([job], one):
                    results.extend(one)
                elif isinstance(job, _HoldJob):
                    results.append((job, None))
                else:
                    self.log.error("ledger_settlement_lost", hold=job.hold, **job.row)
        for hold, ok in results:
            hold.loop.call_soon_threadsafe(_resolve, hold.future, ok)

    def _write_with_retries(
        self, jobs: list[_Job], results: list[tuple[_HoldJob, bool | None]]
    ) -> bool:
        for delay in (*RETRY_DELAYS, None):
            staged: list[tuple[_HoldJob, bool | None]] = []
            try:
                self._write_batch(jobs, staged)
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
            results.extend(staged)
            return True
        return False

    def _write_batch(self, jobs: list[_Job], results: list[tuple[_HoldJob, bool | None]]) -> None:
        """One transaction for the whole batch, a few statements per account in it."""
        now = time.time()
        with self.engine.begin() as conn:
            for account_id, grouped in groupby(jobs, key=lambda j: j.account_id):
                batch = list(grouped)
                # holds first: a settlement in the same batch may be for one of them
                holds = [j for j in batch if isinstance(j, _HoldJob)]
                if holds:
                    results.extend(self._hold_all(conn, account_id, holds, now))
                settles = [j for j in batch if isinstance(j, _SettleJob)]
                if settles:
                    self._settle_all(conn, account_id, settles, now)

    @staticmethod
    def _hold_all(
        conn: Connection, account_id: int, holds: list[_HoldJob], now: float
    ) -> list[tuple[_HoldJob, bool | None]]:
        """Grant the holds, in order, while the account's available balance covers them.

        The no-op UPDATE locks the account row (PostgreSQL) or the database (SQLite) until
        the commit and reads ``balance - held`` under that lock, so this is the conditional
        ``held = held + h WHERE balance - held >= h`` of every hold, decided in one go.
        """
        available = conn.execute(_LOCK, {"account_id": account_id}).scalar()
        if available is None:  # the account is gone
            return [(job, False) for job in holds]
        granted, answers = [], []
        for job in holds:
            ok = job.amount <= available
            if ok:
                available -= job.amount
                granted.append(job)
            answers.append((job, ok))
        if granted:
            total = sum(job.amount for job in granted)
            conn.execute(_ADD_HELD, {"amount": total, "account_id": account_id})
            conn.execute(
                _INSERT_HOLD,
                [
                    {
                        "request_id": j.request_id,
                        "account_id": account_id,
                        "amount": j.amount,
                        "now": now,
                    }
                    for j in granted
                ],
            )
        return answers

    @staticmethod
    def _settle_all(
        conn: Connection, account_id: int, settles: list[_SettleJob], now: float
    ) -> None:
        """Release the holds, capture the costs and write the usage records of `settles`.

        Only holds still in the table are released (the stale sweep may have released one
        already), by the amount the table says was held.
        """
        held = [job.row["request_id"] for job in settles if job.hold]
        released = 0
        if held:
            released = sum(conn.execute(_DELETE_HOLDS, {"request_ids": held}).scalars())
        cost = sum(job.row["cost"] for job in settles)
        if cost or released:
            conn.execute(_SETTLE, {"cost": cost, "released": released, "account_id": account_id})
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
        conn.execute(_USAGE, [{**job.row, "now": now} for job in settles])

    def release_stale(self) -> int:
        """Release holds older than the timeout (left by a crashed process); return how many.

        Safe with several processes sweeping at once: a hold is released only by whoever
        deletes its row.
        """
        cutoff = time.time() - self.hold_timeout
        released = 0
        with self.engine.begin() as conn:
            for request_id, account_id, amount in conn.execute(_STALE, {"cutoff": cutoff}).all():
                if conn.execute(_DELETE_HOLD, {"request_id": request_id}).rowcount == 1:
                    conn.execute(_RELEASE, {"amount": amount, "account_id": account_id})
                    released += 1
        if released:
            self.log.warning("stale_holds_released", count=released)
        return released

    def _guarded(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # the database is down: log and go on
            self.log.error("ledger_sweep_failed", error=repr(exc))


def _resolve(future: asyncio.Future[bool | None], ok: bool | None) -> None:
    if not future.done():
        future.set_result(ok)


def writer(gateway: Gateway) -> LedgerWriter:
    """This gateway's ledger writer (created and started on first use)."""
    found = gateway.state.get("ledger")
    if found is None:
        found = LedgerWriter(gateway.engine, gateway.config.billing.hold_timeout_seconds)
        found.start()
        gateway.state["ledger"] = found
    return found


def worst_case_cost(call: Call, gateway: Gateway) -> int:
    """What the call can cost at most: its prompt estimate plus the output cap, priced."""
    billing = gateway.config.billing
    cap = call.max_output_tokens or billing.default_max_output_tokens
    if call.endpoint in NO_OUTPUT_ENDPOINTS:
        cap = 0
    estimate = call.extra.setdefault("input_estimate", estimate_chars(len(call.raw)))
    tier = call.service_tier
    if tier is not None and tier not in billing.service_tiers and billing.service_tiers:
        tier = max(billing.service_tiers, key=billing.service_tiers.__getitem__)
    usage = Usage(input_tokens=estimate, output_tokens=cap, service_tier=tier)
    charge = gateway.hook.price(call=call, usage=usage, gateway=gateway)
    return charge.amount if charge is not None else 0


@hookimpl(trylast=True)
def admit(call: Call, gateway: Gateway) -> Awaitable[None] | None:
    """Hold the worst-case cost; refuse with 402 when the available balance cannot cover it.

    trylast: every cheaper check (model allowed, rate limits) refuses before money is held.
    """
    if call.principal is None:
        return None
    amount = worst_case_cost(call, gateway)
    if amount <= 0:
        return None
    return _hold(call, gateway, amount)


async def _hold(call: Call, gateway: Gateway, amount: int) -> None:
    assert call.principal is not None
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bool | None] = loop.create_future()
    # Set before waiting: if the client goes away meanwhile, the settlement that follows
    # (queued behind this hold) still deletes the hold if it was taken.
    call.hold = amount
    writer(gateway).submit(
        _HoldJob(call.request_id, call.principal.account_id, amount, future, loop)
    )
    ok = await future
    if ok:
        return
    call.hold = 0
    if ok is None:
        raise GatewayError(
            "unavailable", "The gateway cannot reach its database; try again shortly."
        )
    raise GatewayError(
        "insufficient_balance",
        "You exceeded your current quota: the account's balance does not cover this "
        "request. Top up the account to continue.",
    )


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Queue the settlement: release the hold, capture the cost, write the usage record."""
    principal = call.principal
    if principal is None:
        return
    usage, charge = outcome.usage, outcome.charge
    writer(gateway).submit(
        _SettleJob(
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
    )


@hookimpl
def startup(gateway: Gateway) -> None:
    """Start the writer, which first releases holds a crashed process left behind."""
    writer(gateway)


@hookimpl
def shutdown(gateway: Gateway) -> None:
    """Write every pending settlement before the process exits."""
    found = gateway.state.pop("ledger", None)
    if found is not None:
        found.stop()
