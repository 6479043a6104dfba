"""Helpers for the billing and ledger tests: read the ledger straight from the database and
check its invariants, fire many concurrent calls, and tweak a gateway's `[billing]` table.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy import text
from tokone.core.config import load_config
from tokone.core.store.db import make_engine


def database_url(gateway) -> str:
    """The database URL of a test gateway (from its config file)."""
    return load_config(str(gateway.config_path)).database.url


def with_billing(gateway, lines: str):
    """Add `lines` to the `[billing]` table of a not-yet-started gateway's config."""
    marker = "default_max_output_tokens = 1000\n"
    config = gateway.config_path.read_text()
    assert marker in config
    gateway.config_path.write_text(config.replace(marker, marker + lines.strip() + "\n", 1))
    return gateway


@dataclass
class LedgerState:
    """Everything the invariants talk about, for one account, read in one transaction."""

    balance: int
    held: int
    entries: dict[str, int]
    """Sum of amounts per ledger kind."""
    ledger_sum: int
    open_holds: int
    open_hold_amount: int
    usage_cost: int
    captures: dict[str, int] = field(default_factory=dict)
    """request_id -> captured amount (positive)."""
    capture_rows: int = 0
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)
    """request_id -> (status, cost) of every usage record."""


def read_ledger(url: str, account: str) -> LedgerState:
    """The account's ledger, holds and usage records, straight from the database."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            account_id, balance, held = conn.execute(
                text("SELECT id, balance, held FROM accounts WHERE name = :n"), {"n": account}
            ).one()
            where = {"a": account_id}
            entries = dict(
                conn.execute(
                    text(
                        "SELECT kind, SUM(amount) FROM ledger_entries WHERE account_id = :a "
                        "GROUP BY kind"
                    ),
                    where,
                ).all()
            )
            holds, hold_amount = conn.execute(
                text("SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM holds WHERE account_id = :a"),
                where,
            ).one()
            captures = conn.execute(
                text(
                    "SELECT request_id, -amount FROM ledger_entries "
                    "WHERE account_id = :a AND kind = 'capture'"
                ),
                where,
            ).all()
            usage = conn.execute(
                text("SELECT request_id, status, cost FROM usage_records WHERE account_id = :a"),
                where,
            ).all()
    finally:
        engine.dispose()
    return LedgerState(
        balance=balance,
        held=held,
        entries={k: int(v) for k, v in entries.items()},
        ledger_sum=sum(int(v) for v in entries.values()),
        open_holds=holds,
        open_hold_amount=int(hold_amount),
        usage_cost=sum(cost for _, _, cost in usage),
        captures={rid: int(amount) for rid, amount in captures},
        capture_rows=len(captures),
        usage={rid: (status, cost) for rid, status, cost in usage},
    )


def assert_ledger_consistent(url: str, account: str) -> LedgerState:
    """Check the invariants of `tokone.plugins.ledger` for one account; return its state.

    * the cached balance is the sum of the ledger entries, and equals
      topups + refunds + adjustments - captures;
    * the sum of the captures equals the sum of the usage records' costs, call by call,
      and no call is captured twice;
    * the cached `held` equals the open holds.
    """
    state = read_ledger(url, account)
    kinds = state.entries
    assert set(kinds) <= {"topup", "capture", "refund", "adjustment"}, kinds
    assert state.balance == state.ledger_sum, state
    assert state.balance == (
        kinds.get("topup", 0)
        + kinds.get("refund", 0)
        + kinds.get("adjustment", 0)
        + kinds.get("capture", 0)
    )
    assert state.capture_rows == len(state.captures), "a request was captured twice"
    assert sum(state.captures.values()) == state.usage_cost, state
    for request_id, amount in state.captures.items():
        assert state.usage[request_id][1] == amount, request_id
    assert all(cost == 0 for rid, (_, cost) in state.usage.items() if rid not in state.captures)
    assert state.held == state.open_hold_amount, state
    return state


def wait_settled(url: str, account: str, requests: int, timeout: float = 10.0) -> LedgerState:
    """Wait until `requests` usage records exist and no money is held; return the state."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_ledger(url, account)
        if len(state.usage) >= requests and state.held == 0 and state.open_holds == 0:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled: {len(state.usage)}/{requests} records, {state}")
        time.sleep(0.05)


def usage_record(gateway, request_id: str, timeout: float = 5.0) -> dict:
    """The gateway's usage record of one call, once the ledger writer has written it."""
    engine = make_engine(database_url(gateway))
    query = text("SELECT * FROM usage_records WHERE request_id = :r")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                row = conn.execute(query, {"r": request_id}).one_or_none()
            if row is not None:
                return dict(row._mapping)
            if time.monotonic() > deadline:
                raise AssertionError(f"no usage record for {request_id}")
            time.sleep(0.05)
    finally:
        engine.dispose()


CHAT = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 20}


async def fire(
    urls: list[str], key: str, count: int, body: dict | None = None
) -> list[tuple[int, str]]:
    """Send `count` calls at once, spread over `urls`; return (status, x-request-id) of each.

    aiohttp, not httpx: httpx's pool costs about 5 s of CPU for 300 connections opened at
    once (aiohttp: under half a second), which on a two-core machine slows the gateways
    under test as well."""
    connector = aiohttp.TCPConnector(limit=count)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:

        async def one(i: int) -> tuple[int, str]:
            async with client.post(
                urls[i % len(urls)] + "/v1/chat/completions",
                json=body or CHAT,
                headers={"authorization": f"Bearer {key}"},
            ) as response:
                await response.read()
                return response.status, response.headers.get("x-request-id", "")

        return await asyncio.gather(*(one(i) for i in range(count)))
