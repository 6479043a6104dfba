"""Ledger invariants with THREE gateway processes sharing one PostgreSQL database.

Every process holds with the same conditional UPDATE and settles in its own grouped
transactions; the database row lock is the only coordination. Calls spread over the three
processes on an account that can pay for only some of them must each be charged exactly
once or refused with 402, and the balance must never go below zero.
"""

from __future__ import annotations

import asyncio

from conftest import start_together
from ledger_checks import assert_ledger_consistent, fire, wait_settled
from tokone.providers.mock_words import WORDS

MOCK_COST = 1 * 1 + len(WORDS) * 2


def test_three_gateways_on_postgres_never_overspend(make_gateway, postgres_url):
    gateways = start_together(*(make_gateway(database=postgres_url, start=False) for _ in range(3)))
    key = gateways[0].funded_key("shared", "0.003")  # 3000 micro-units: 120 calls at most
    results = asyncio.run(fire([g.url for g in gateways], key, 360))

    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 402}, statuses
    admitted = {rid for status, rid in results if status == 200}
    refused = {rid for status, rid in results if status == 402}
    assert admitted and refused and len(admitted) + len(refused) == 360
    wait_settled(postgres_url, "shared", 360)
    state = assert_ledger_consistent(postgres_url, "shared")

    assert set(state.captures) == admitted
    assert all(amount == MOCK_COST for amount in state.captures.values())
    assert all(state.usage[rid] == (402, 0) for rid in refused)
    assert state.balance == 3000 - MOCK_COST * len(admitted) >= 0
    assert state.open_holds == 0 and state.held == 0
    for gateway in gateways:  # every process sees the same, consistent account
        assert "OK" in gateway.cli("accounts", "check", "shared")
