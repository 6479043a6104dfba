"""The writer thread: every lease change and settlement, committed in groups.

One thread per process takes jobs (:mod:`tokone.plugins.ledger.jobs`) from a queue and
commits whatever is queued in one transaction, account rows in id order so two processes
cannot deadlock (each account's share: :mod:`tokone.plugins.ledger.batch`). A transient
error is retried; a batch that still fails is redone job by job, so one bad job never sinks
the rest; while the database is unreachable, settlements are kept and retried every
``DEFER_RETRY_SECONDS``. Between batches it sweeps the hold rows
(:mod:`tokone.plugins.ledger.holds`).
"""

from __future__ import annotations

import asyncio
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from itertools import groupby

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from tokone.plugins.ledger import holds, sql
from tokone.plugins.ledger.batch import write_account_batch
from tokone.plugins.ledger.jobs import Job, LeaseJob, Report, SettleJob, TrimJob

BATCH_MAX = 512
STALE_SWEEP_SECONDS = 30.0
RETRY_DELAYS = (0.05, 0.2, 0.5)
GROUP_COMMIT_SECONDS = 0.01
"""Settlements wait up to this long for company before they are committed."""
DEFER_RETRY_SECONDS = 1.0
"""While the database is unreachable, kept settlements are retried this often."""
DEFERRED_MAX = 100_000
"""Settlements kept at most while the database is unreachable (the rest are logged as lost)."""


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
        self.queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.log = structlog.get_logger("tokone")
        self._thread = threading.Thread(target=self._run, name="tokone-ledger", daemon=True)
        self._next_sweep = 0.0
        self._deferred: list[SettleJob] = []
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

    def submit(self, job: Job) -> None:
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
                batch: list[Job | None] = [
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

    def _collect(self, batch: list[Job | None]) -> None:
        """Add what is queued to `batch`; when nobody waits on it (no lease job), keep
        collecting for up to GROUP_COMMIT_SECONDS so quiet traffic commits in groups too."""
        deadline = time.monotonic() + GROUP_COMMIT_SECONDS
        urgent = any(not isinstance(j, SettleJob | TrimJob) for j in batch)
        while len(batch) < BATCH_MAX:
            wait = 0.0 if urgent else deadline - time.monotonic()
            try:
                job = self.queue.get(timeout=wait) if wait > 0 else self.queue.get_nowait()
            except queue.Empty:
                return
            batch.append(job)
            urgent = urgent or not isinstance(job, SettleJob | TrimJob)

    def _write(self, jobs: list[Job]) -> None:
        # Account order: two processes' batches then lock account rows in the same order.
        jobs.sort(key=lambda j: j.account_id)
        grants: list[tuple[LeaseJob, int | None]] = []
        reports: list[Report] = []
        if self._write_with_retries(jobs, grants, reports):
            pass
        elif not holds.reachable(self.engine):
            # The database is away: keep the settlements, refuse lease growth, retry later.
            for job in jobs:
                if isinstance(job, LeaseJob):
                    grants.append((job, None))
                elif isinstance(job, TrimJob):
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
                if isinstance(job, LeaseJob):
                    grants.append((job, None))
                elif isinstance(job, SettleJob):
                    self.log.error("ledger_settlement_lost", **job.row)
                    reports.append(Report(job.account_id, None, settled=job.row["cost"]))
                else:
                    reports.append(Report(job.account_id, None, trimmed=job.amount))
        self.report(reports)
        for lease, granted in grants:
            lease.loop.call_soon_threadsafe(_resolve, lease.future, granted)

    def _write_with_retries(
        self,
        jobs: list[Job],
        grants: list[tuple[LeaseJob, int | None]],
        reports: list[Report],
    ) -> bool:
        for delay in (*RETRY_DELAYS, None):
            staged_grants: list[tuple[LeaseJob, int | None]] = []
            staged_reports: list[Report] = []
            try:
                with self.engine.begin() as conn:
                    now = time.time()
                    for account_id, grouped in groupby(jobs, key=lambda j: j.account_id):
                        staged_reports.append(
                            write_account_batch(
                                conn,
                                self.lease_id(account_id),
                                account_id,
                                list(grouped),
                                now,
                                staged_grants,
                            )
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

    def heartbeat(self) -> None:
        """Mark this process's leases as alive, so no other process's sweep releases them."""
        holds.heartbeat(self.engine, self.lease_prefix)

    def release_stale(self) -> int:
        """Release holds older than the timeout (left by a crashed process); return how many."""
        released = holds.release(
            self.engine, sql.STALE, {"cutoff": time.time() - self.hold_timeout}
        )
        if released:
            self.log.warning("stale_holds_released", count=released)
        return released

    def release_own(self) -> int:
        """Give every lease of this process back (at shutdown)."""
        return holds.release(self.engine, sql.OWN, {"prefix": self.lease_prefix + "%"})

    def _guarded(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:  # the database is down: log and go on
            self.log.error("ledger_sweep_failed", error=repr(exc))


def _resolve(future: asyncio.Future[int | None], granted: int | None) -> None:
    if not future.done():
        future.set_result(granted)
