"""The ledger: balance holds at admission, capture + usage record after the call.

Admission holds the call's worst-case cost (prompt estimate + output cap, priced by the
`price` hook) with one conditional UPDATE — ``held = held + h WHERE balance - held >= h`` —
which is atomic on SQLite and PostgreSQL alike, so several gateway processes sharing a
database never over-commit an account. After the call, one transaction deletes the hold,
appends a `capture` ledger entry for the actual cost and writes the usage record, so
"sum of captures = sum of usage-record costs" holds even across crashes.

All writes go through one writer thread per process that commits in groups (every queued
hold and settlement in one transaction), so the event loop never waits on the database
except for the admission answer itself. Holds older than `billing.hold_timeout_seconds`
(left by a crashed process) are released by every process's writer.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from tokone.core.errors import GatewayError
from tokone.core.gateway import Gateway
from tokone.core.hookspecs import hookimpl
from tokone.core.tokens import estimate_chars
from tokone.core.types import Call, Outcome, Usage

BATCH_MAX = 512
STALE_SWEEP_SECONDS = 30.0

_HOLD = text(
    "UPDATE accounts SET held = held + :amount WHERE id = :account_id AND balance - held >= :amount"
)
_INSERT_HOLD = text(
    "INSERT INTO holds (request_id, account_id, amount, created_at) "
    "VALUES (:request_id, :account_id, :amount, :now)"
)
_DELETE_HOLD = text("DELETE FROM holds WHERE request_id = :request_id")
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
_STALE = text("SELECT request_id, account_id, amount FROM holds WHERE created_at < :cutoff")
_RELEASE = text("UPDATE accounts SET held = held - :amount WHERE id = :account_id")


@dataclass(slots=True)
class _HoldJob:
    request_id: str
    account_id: int
    amount: int
    future: asyncio.Future[bool]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class _SettleJob:
    hold: int
    row: dict[str, Any]


class LedgerWriter:
    """One thread that applies holds and settlements to the database in grouped commits."""

    def __init__(self, engine: Engine, hold_timeout: float) -> None:
        self.engine = engine
        self.hold_timeout = hold_timeout
        self.queue: queue.SimpleQueue[_HoldJob | _SettleJob | None] = queue.SimpleQueue()
        self.pending = 0
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="tokone-ledger", daemon=True)
        self._next_sweep = 0.0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued, then stop the thread."""
        self.queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, job: _HoldJob | _SettleJob) -> None:
        """Queue a job (thread-safe)."""
        with self._idle:
            self.pending += 1
        self.queue.put(job)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every queued job is written (for tests and shutdown)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self.pending:
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._idle.wait(left)
        return True

    def _run(self) -> None:
        while True:
            job = self.queue.get()
            batch = [job]
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            jobs = [j for j in batch if j is not None]
            if jobs:
                self._write(jobs)
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + STALE_SWEEP_SECONDS
                self._guarded(self.release_stale)
            if stop:
                return

    def _write(self, jobs: list[_HoldJob | _SettleJob]) -> None:
        results: list[tuple[_HoldJob, bool]] = []
        try:
            self._write_batch(jobs, results)
        except Exception:
            # One bad job must not sink the others: redo them one transaction each.
            for job in jobs:
                one: list[tuple[_HoldJob, bool]] = []
                if self._guarded(lambda job=job, one=one: self._write_batch([job], one)):
                    results.extend(one)
                elif isinstance(job, _HoldJob):
                    results.append((job, False))
        for hold, ok in results:
            hold.loop.call_soon_threadsafe(_resolve, hold.future, ok)
        with self._idle:
            self.pending -= len(jobs)
            self._idle.notify_all()

    def _write_batch(
        self, jobs: list[_HoldJob | _SettleJob], results: list[tuple[_HoldJob, bool]]
    ) -> None:
        now = time.time()
        staged: list[tuple[_HoldJob, bool]] = []
        with self.engine.begin() as conn:
            for job in jobs:
                if isinstance(job, _HoldJob):
                    params = {"account_id": job.account_id, "amount": job.amount}
                    ok = conn.execute(_HOLD, params).rowcount == 1
                    if ok:
                        conn.execute(
                            _INSERT_HOLD, {**params, "request_id": job.request_id, "now": now}
                        )
                    staged.append((job, ok))
                    continue
                row = job.row
                released = 0
                if job.hold:
                    deleted = conn.execute(_DELETE_HOLD, {"request_id": row["request_id"]})
                    released = job.hold if deleted.rowcount == 1 else 0
                if row["cost"] or released:
                    conn.execute(
                        _SETTLE,
                        {
                            "cost": row["cost"],
                            "released": released,
                            "account_id": row["account_id"],
                        },
                    )
                if row["cost"]:
                    conn.execute(
                        _CAPTURE,
                        {
                            "account_id": row["account_id"],
                            "amount": -row["cost"],
                            "request_id": row["request_id"],
                            "now": now,
                        },
                    )
                conn.execute(_USAGE, {**row, "now": now})
        results.extend(staged)

    def release_stale(self) -> int:
        """Release holds older than the timeout (left by a crashed process); return how many."""
        cutoff = time.time() - self.hold_timeout
        released = 0
        with self.engine.begin() as conn:
            for request_id, account_id, amount in conn.execute(_STALE, {"cutoff": cutoff}).all():
                if conn.execute(_DELETE_HOLD, {"request_id": request_id}).rowcount == 1:
                    conn.execute(_RELEASE, {"amount": amount, "account_id": account_id})
                    released += 1
        return released

    def _guarded(self, fn: Any) -> bool:
        try:
            fn()
            return True
        except Exception as exc:  # the database is down or a row is bad: log and go on
            import structlog

            structlog.get_logger("tokone").error("ledger_write_failed", error=repr(exc))
            return False


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
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
    cap = call.max_output_tokens or gateway.config.billing.default_max_output_tokens
    estimate = call.extra.setdefault("input_estimate", estimate_chars(len(call.raw)))
    usage = Usage(input_tokens=estimate, output_tokens=cap, service_tier=call.service_tier)
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
    future: asyncio.Future[bool] = loop.create_future()
    writer(gateway).submit(
        _HoldJob(call.request_id, call.principal.account_id, amount, future, loop)
    )
    if not await future:
        raise GatewayError(
            "insufficient_balance",
            "You exceeded your current quota: the account's balance does not cover this "
            "request. Top up the account to continue.",
        )
    call.hold = amount


@hookimpl
def meter(call: Call, outcome: Outcome, gateway: Gateway) -> None:
    """Queue the settlement: release the hold, capture the cost, write the usage record."""
    principal = call.principal
    if principal is None:
        return
    usage, charge = outcome.usage, outcome.charge
    writer(gateway).submit(
        _SettleJob(
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
def shutdown(gateway: Gateway) -> None:
    """Write every pending settlement before the process exits."""
    found = gateway.state.pop("ledger", None)
    if found is not None:
        found.stop()
