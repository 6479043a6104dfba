"""The ledger: balance holds at admission, capture + usage record after the call.

Architecture
============

The plugin is this package, registered as ``ledger``; its modules, from the hooks down:

* :mod:`~tokone.plugins.ledger.hooks` — the ``admit``, ``meter``, ``startup`` and
  ``shutdown`` implementations (imported here so that registering the package registers them);
* :mod:`~tokone.plugins.ledger.cost` — a call's hold: its worst-case cost, priced;
* :mod:`~tokone.plugins.ledger.leases` — per-account budgets in memory (event loop side);
* :mod:`~tokone.plugins.ledger.jobs` — the jobs the loop queues and the reports it gets back;
* :mod:`~tokone.plugins.ledger.writer` — the writer thread: group commits, retries, deferral;
* :mod:`~tokone.plugins.ledger.batch` — one account's share of a batch, in a few statements;
* :mod:`~tokone.plugins.ledger.holds` — lease heartbeats and the release of stale holds;
* :mod:`~tokone.plugins.ledger.sql` — every SQL statement the writer runs.

Only ``hooks`` touches the gateway's hook calls; only ``writer`` (through ``batch`` and
``holds``) touches the database.

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

from tokone.plugins.ledger.hooks import admit, meter, shutdown, startup

__all__ = ["admit", "meter", "shutdown", "startup"]
