"""Redemption codes: created by the CLI (printed once, stored hashed), redeemed by a user's
key through `POST /v1/dashboard/redeem`, exactly once even when redeemed concurrently.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from conftest import MOCK_PROVIDER
from ledger_checks import assert_ledger_consistent, database_url
from sqlalchemy import text
from tokone.core.store.db import make_engine

PROVIDERS = MOCK_PROVIDER
"""One gateway for the module (conftest's `gateway`): each test makes codes of its own
amount and redeems them into accounts of its own."""


def redeem(gateway, key: str, code: str) -> httpx.Response:
    return httpx.post(
        gateway.url + "/v1/dashboard/redeem",
        json={"code": code},
        headers={"authorization": f"Bearer {key}"},
    )


def listed(gateway, *flags: str) -> list[dict]:
    """`tokone codes list --json`."""
    return json.loads(gateway.cli("codes", "list", *flags, "--json"))


def test_codes_are_printed_once_stored_hashed_and_redeemed_once(gateway):
    codes = gateway.cli("codes", "create", "--amount", "2.5", "--count", "3").split()
    assert len(set(codes)) == 3 and all(c.startswith("tkc-") for c in codes)
    engine = make_engine(database_url(gateway))
    with engine.connect() as conn:
        stored = " ".join(str(row) for row in conn.execute(text("SELECT * FROM redemption_codes")))
    engine.dispose()
    assert not any(code in stored for code in codes)  # only hashes and short prefixes
    listing = gateway.cli("codes", "list")
    assert "2.500000" in listing and not any(code in listing for code in codes)

    key = gateway.funded_key("user", "")
    first = redeem(gateway, key, codes[0].lower())  # codes are case-insensitive
    assert first.status_code == 200
    assert first.json() == {
        "account": "user",
        "credited": "2.500000",
        "credited_micro": 2_500_000,
        "balance": "2.500000",
        "balance_micro": 2_500_000,
    }
    again = redeem(gateway, key, codes[0])
    assert again.status_code == 409 and "already been redeemed" in again.json()["error"]["message"]
    assert redeem(gateway, key, "tkc-NOT-A-CODE").status_code == 404
    no_key = httpx.post(gateway.url + "/v1/dashboard/redeem", json={"code": codes[1]})
    assert no_key.status_code == 401

    used = [c for c in listed(gateway) if c["amount_micro"] == 2_500_000]
    assert [c["redeemed_by"] for c in used] == ["user", None, None]
    unused = listed(gateway, "--unused")
    assert [c["amount_micro"] for c in unused].count(2_500_000) == 2
    state = assert_ledger_consistent(database_url(gateway), "user")
    assert state.entries == {"topup": 2_500_000}


def test_a_code_redeemed_concurrently_credits_exactly_once(gateway):
    code = gateway.cli("codes", "create", "--amount", "1").strip()
    keys = [gateway.funded_key(name, "") for name in ("alice", "bob")]

    async def race() -> list[int]:
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        gateway.url + "/v1/dashboard/redeem",
                        json={"code": code},
                        headers={"authorization": f"Bearer {keys[i % 2]}"},
                    )
                    for i in range(40)
                )
            )

    responses = asyncio.run(race())
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 39
    url = database_url(gateway)
    balances = {name: assert_ledger_consistent(url, name).balance for name in ("alice", "bob")}
    assert sorted(balances.values()) == [0, 1_000_000]
