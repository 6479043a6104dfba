"""The ledger writer in-process: failures are isolated, and a database that cannot take a
hold gives 503 rather than a misleading 402.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from ledger_checks import assert_ledger_consistent, read_ledger
from sqlalchemy import text
from tokone.core.config import parse_config
from tokone.core.db import make_engine, upgrade
from tokone.core.errors import GatewayError
from tokone.core.types import Call, Family, Principal
from tokone.plugins import ledger


def usage_row(request_id: str, account_id: int, cost: int) -> dict:
    return dict(request_id=request_id, account_id=account_id, key_id=1, endpoint="chat",
                model="m", provider="p", upstream_model="m", input_tokens=1,
                cached_input_tokens=0, output_tokens=1, estimated=False, cost=cost,
                multiplier=1.0, tier="default", status=200, latency_ms=1.0)


@pytest.fixture
def database(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.begin() as conn:
        for name in ("a", "b"):
            conn.execute(text(
                "INSERT INTO accounts (name, \"group\", balance, held, created_at) "
                "VALUES (:n, 'default', 0, 0, 0)"), {"n": name})
            conn.execute(text(
                "INSERT INTO ledger_entries (account_id, kind, amount, actor, note, created_at) "
                "SELECT id, 'topup', 1000, 'test', '', 0 FROM accounts WHERE name = :n"),
                {"n": name})
            conn.execute(text("UPDATE accounts SET balance = 1000 WHERE name = :n"), {"n": name})
    yield url, engine
    engine.dispose()


def test_holds_are_granted_in_order_while_the_balance_covers_them(database):
    url, engine = database
    writer = ledger.LedgerWriter(engine, 600)

    async def hold_all() -> list[bool | None]:
        loop = asyncio.get_running_loop()
        jobs = [ledger._HoldJob(f"r{i}", 1, amount, loop.create_future(), loop)
                for i, amount in enumerate([400, 700, 500, 100, 1])]
        writer._write(jobs)
        return [await job.future for job in jobs]

    assert asyncio.run(hold_all()) == [True, False, True, True, False]
    state = read_ledger(url, "a")
    assert state.held == 1000 and state.open_holds == 3
    assert_ledger_consistent(url, "a")


def test_a_duplicate_settlement_does_not_sink_the_rest_of_its_batch(database):
    url, engine = database
    writer = ledger.LedgerWriter(engine, 600)
    writer._write([ledger._SettleJob(1, 0, usage_row("once", 1, 10))])
    writer._write([
        ledger._SettleJob(1, 0, usage_row("once", 1, 10)),  # the same call again: refused
        ledger._SettleJob(1, 0, usage_row("other", 1, 20)),
        ledger._SettleJob(2, 0, usage_row("elsewhere", 2, 30)),
    ])
    a, b = assert_ledger_consistent(url, "a"), assert_ledger_consistent(url, "b")
    assert a.captures == {"once": 10, "other": 20} and a.balance == 1000 - 30
    assert b.captures == {"elsewhere": 30} and b.balance == 1000 - 30


def test_a_database_that_cannot_take_the_hold_is_503(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "RETRY_DELAYS", (0.01,))
    config = parse_config({"prices": {"m": {"input": 1.0, "output": 1.0}}})
    unreachable = make_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    gateway = SimpleNamespace(config=config, engine=unreachable, state={})
    gateway.hook = SimpleNamespace(price=lambda call, usage, gateway: SimpleNamespace(amount=5))
    principal = Principal(key_id=1, account_id=1, account_name="a", group="default")
    call = Call("r1", Family.OPENAI, "chat.completions", "m", raw=b"{}", principal=principal)

    async def admit() -> None:
        try:
            await ledger.admit(call, gateway)
        finally:
            ledger.shutdown(gateway)

    with pytest.raises(GatewayError) as refused:
        asyncio.run(admit())
    assert refused.value.status == 503 and call.hold == 0
