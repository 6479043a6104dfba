"""The ledger writer in-process: leases grow only as far as the balance allows, costs come
out of them, failures are isolated, and a database that cannot grow a lease gives 503
rather than a misleading 402.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from conftest import migrated_sqlite
from ledger_checks import assert_ledger_consistent, read_ledger
from sqlalchemy import text
from tokone.core.config import parse_config
from tokone.core.errors import GatewayError
from tokone.core.store.db import make_engine
from tokone.core.types import Call, Family, Principal
from tokone.plugins.ledger import hooks
from tokone.plugins.ledger import writer as ledger_writer
from tokone.plugins.ledger.jobs import LeaseJob, Report, SettleJob, TrimJob
from tokone.plugins.ledger.leases import Leases
from tokone.plugins.ledger.writer import LedgerWriter


def usage_row(request_id: str, account_id: int, cost: int) -> dict:
    return dict(
        request_id=request_id,
        account_id=account_id,
        key_id=1,
        endpoint="chat",
        stream=False,
        model="m",
        provider="p",
        upstream_model="m",
        input_tokens=1,
        cached_input_tokens=0,
        output_tokens=1,
        estimated=False,
        cost=cost,
        multiplier=1.0,
        tier="default",
        status=200,
        latency_ms=1.0,
    )


@pytest.fixture
def database(tmp_path):
    url = migrated_sqlite(tmp_path / "ledger.db")
    engine = make_engine(url)
    with engine.begin() as conn:
        for name in ("a", "b"):
            conn.execute(
                text(
                    'INSERT INTO accounts (name, "group", balance, held, created_at) '
                    "VALUES (:n, 'default', 0, 0, 0)"
                ),
                {"n": name},
            )
            conn.execute(
                text(
                    "INSERT INTO ledger_entries "
                    "(account_id, kind, amount, actor, note, created_at) "
                    "SELECT id, 'topup', 1000, 'test', '', 0 FROM accounts WHERE name = :n"
                ),
                {"n": name},
            )
            conn.execute(text("UPDATE accounts SET balance = 1000 WHERE name = :n"), {"n": name})
    yield url, engine
    engine.dispose()


def test_leases_grow_in_order_while_the_balance_covers_their_need(database):
    url, engine = database
    reports: list[Report] = []
    writer = LedgerWriter(engine, 600, reports.extend)

    async def grow_all() -> list[int | None]:
        loop = asyncio.get_running_loop()
        asks = [(400, 400), (100, 700), (500, 500), (1, 100), (1, 1)]  # (need, want)
        jobs = [LeaseJob(1, need, want, loop.create_future(), loop) for need, want in asks]
        writer._write(jobs)
        return [await job.future for job in jobs]

    # 400; then 600 of the 700 wanted (all that is left, more than the 100 needed); nothing
    # is left for the rest
    assert asyncio.run(grow_all()) == [400, 600, 0, 0, 0]
    assert reports == [Report(1, 1000)]
    state = read_ledger(url, "a")
    assert state.held == 1000 and state.open_holds == 1  # one lease row for the process
    assert_ledger_consistent(url, "a")


def test_costs_come_out_of_the_lease_and_the_rest_goes_back(database):
    url, engine = database
    reports: list[Report] = []
    writer = LedgerWriter(engine, 600, reports.extend)

    async def grow() -> int | None:
        loop = asyncio.get_running_loop()
        job = LeaseJob(1, 100, 300, loop.create_future(), loop)
        writer._write([job])
        return await job.future

    assert asyncio.run(grow()) == 300
    writer._write([SettleJob(1, usage_row("r1", 1, 120)), TrimJob(1, 100)])
    assert reports[-1] == Report(1, 80, settled=120, trimmed=100)
    state = assert_ledger_consistent(url, "a")
    assert state.balance == 1000 - 120 and state.held == 80
    writer.release_own()  # at shutdown
    state = assert_ledger_consistent(url, "a")
    assert state.held == 0 and state.open_holds == 0 and state.balance == 880


def test_a_cost_above_the_lease_still_comes_out_of_the_balance(database):
    url, engine = database
    writer = LedgerWriter(engine, 600)
    writer._write([SettleJob(1, usage_row("big", 1, 250))])  # no lease at all
    state = assert_ledger_consistent(url, "a")
    assert state.balance == 750 and state.held == 0 and state.captures == {"big": 250}


def test_a_duplicate_settlement_does_not_sink_the_rest_of_its_batch(database):
    url, engine = database
    writer = LedgerWriter(engine, 600)
    writer._write([SettleJob(1, usage_row("once", 1, 10))])
    writer._write(
        [
            SettleJob(1, usage_row("once", 1, 10)),  # the same call again: refused
            SettleJob(1, usage_row("other", 1, 20)),
            SettleJob(2, usage_row("elsewhere", 2, 30)),
        ]
    )
    a, b = assert_ledger_consistent(url, "a"), assert_ledger_consistent(url, "b")
    assert a.captures == {"once": 10, "other": 20} and a.balance == 1000 - 30
    assert b.captures == {"elsewhere": 30} and b.balance == 1000 - 30


def test_a_database_that_cannot_take_the_hold_is_503(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger_writer, "RETRY_DELAYS", (0.01,))
    config = parse_config({"prices": {"m": {"input": 1.0, "output": 1.0}}})
    unreachable = make_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    gateway = SimpleNamespace(config=config, engine=unreachable, state={})
    gateway.hook = SimpleNamespace(
        price=lambda call, usage, gateway: SimpleNamespace(amount=5, detail={})
    )
    principal = Principal(key_id=1, account_id=1, account_name="a", group="default")
    call = Call("r1", Family.OPENAI, "chat.completions", "m", raw=b"{}", principal=principal)

    async def admit() -> None:
        try:
            await hooks.admit(call, gateway)
        finally:
            hooks.shutdown(gateway)

    with pytest.raises(GatewayError) as refused:
        asyncio.run(admit())
    assert refused.value.status == 503 and call.hold == 0


def test_a_burst_on_one_account_grows_its_lease_a_few_times_not_once_per_16_calls(database):
    """200 calls of one account arriving at once: the growths ask for every waiting call,
    so the burst is admitted after a few database round trips instead of 13 in a row (each
    growth used to cover 16 calls), which made the last call's admission wait for all."""
    url, engine = database
    gateway = SimpleNamespace(config=parse_config({}), engine=engine, state={})
    principal = Principal(key_id=1, account_id=1, account_name="a", group="default")
    calls = [
        Call(f"r{i}", Family.OPENAI, "chat.completions", "m", raw=b"{}", principal=principal)
        for i in range(200)
    ]
    growths: list[LeaseJob] = []

    async def burst() -> None:
        leases = Leases(gateway)
        submit = leases.writer.submit
        leases.writer.submit = lambda job: (
            growths.append(job) if isinstance(job, LeaseJob) else None,
            submit(job),
        )
        try:
            pending = [leases.take(call, 2) for call in calls]
            await asyncio.gather(*(p for p in pending if p is not None))
        finally:
            leases.stop()

    asyncio.run(burst())
    assert all(call.hold == 2 for call in calls)
    assert len(growths) <= 3, [(job.need, job.want) for job in growths]
    state = assert_ledger_consistent(url, "a")
    assert state.held == 0 and state.balance == 1000  # stop() gave the lease back
