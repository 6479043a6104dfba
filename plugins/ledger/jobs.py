"""What the event loop asks of the writer thread (jobs) and what it answers (reports)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class LeaseJob:
    """Grow the lease by `want` (at least `need`, or nothing) if the balance allows."""

    account_id: int
    need: int
    want: int
    future: asyncio.Future[int | None]
    loop: asyncio.AbstractEventLoop


@dataclass(slots=True)
class SettleJob:
    """Capture a finished call's cost from the lease and write its usage record."""

    account_id: int
    row: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class TrimJob:
    """Give `amount` of the lease back to the account."""

    account_id: int
    amount: int


Job = LeaseJob | SettleJob | TrimJob


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
