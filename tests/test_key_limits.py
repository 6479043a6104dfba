"""Per-key spend limits and account budgets, through the official openai SDK.

A key's limit is held like the balance (worst-case cost at admission, actual cost after),
so concurrent calls never take it past the limit; a refusal is a 402 that names the key's
limit and when it resets. Two gateway processes on PostgreSQL enforce one limit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import UTC, datetime, timedelta

import openai
import pytest
from conftest import wait_until
from ledger_checks import CHAT, assert_ledger_consistent, database_url, fire, wait_settled
from sqlalchemy import text
from tokone.core.store.db import make_engine
from tokone.providers.mock_words import WORDS

MOCK_COST = 1 * 1 + len(WORDS) * 2
"""What one CHAT call costs (1 input token, the mock's words as output, at mock-1's price)."""


def key_id_of(gateway, account: str) -> int:
    """The id of the newest key of `account`."""
    engine = make_engine(database_url(gateway))
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT k.id FROM api_keys k JOIN accounts a ON a.id = k.account_id "
                        "WHERE a.name = :n ORDER BY k.id DESC"
                    ),
                    {"n": account},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def key_spent(url: str, key_id: int, scope: str = "") -> dict[str, int]:
    """Every spend counter of a key (or of another `scope`, e.g. ``account:1``: period label
    -> spent) and its open lease amount."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            counters = dict(
                conn.execute(
                    text("SELECT period, spent FROM spend_counters WHERE scope = :s"),
                    {"s": scope or f"key:{key_id}"},
                ).all()
            )
            leased = conn.execute(
                text("SELECT COALESCE(SUM(amount), 0) FROM spend_holds WHERE scope = :s"),
                {"s": scope or f"key:{key_id}"},
            ).scalar_one()
    finally:
        engine.dispose()
    return {**{k: int(v) for k, v in counters.items()}, "_leased": int(leased)}


def client(gateway, key: str) -> openai.OpenAI:
    """The official SDK pointed at the gateway, without retries (a 402 must surface)."""
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


FAST = "\n[plugins.key_auth]\nrefresh_seconds = 0.05\n"


def test_daily_limit_refuses_with_402_naming_the_key_and_its_reset(make_gateway):
    gateway = make_gateway(FAST)
    key = gateway.funded_key("ci", "10")
    key_id = key_id_of(gateway, "ci")
    out = gateway.cli(
        "limits", "key", str(key_id), "--per-period", f"0.{3 * MOCK_COST:06d}", "--period", "day"
    )
    assert "daily" in out
    sdk = client(gateway, key)
    admitted = 0
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(10):
            sdk.chat.completions.create(**CHAT)
            admitted += 1
    assert refused.value.status_code == 402
    message = refused.value.body["message"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert "API key's daily spend limit" in message and "not the account's balance" in message
    assert f"resets at {tomorrow}T00:00:00+00:00" in message
    # The holds are 62 micro-units each, so the last call that still fits is refused only
    # once the room is below one hold: every admitted call was charged, within the limit.
    assert 1 <= admitted <= 3
    state = wait_settled(database_url(gateway), "ci", admitted + 1)
    assert state.balance == 10_000_000 - admitted * MOCK_COST
    today = datetime.now(UTC).date().isoformat()
    assert key_spent(database_url(gateway), key_id)[f"day:{today}@UTC"] == admitted * MOCK_COST
    listing = gateway.cli("limits", "list", "--account", "ci")
    assert f"0.{admitted * MOCK_COST:06d}/0.{3 * MOCK_COST:06d} daily" in listing
    # Raising the limit lets the key spend again (visible through the key cache).
    gateway.cli("limits", "key", str(key_id), "--per-period", "1")
    for _ in range(50):
        try:
            sdk.chat.completions.create(**CHAT)
            break
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            asyncio.run(asyncio.sleep(0.05))
    else:
        raise AssertionError("the raised limit never took effect")


def test_total_limit_and_timezone_in_message(make_gateway):
    gateway = make_gateway(FAST)
    key = gateway.funded_key("tz", "10")
    key_id = key_id_of(gateway, "tz")
    gateway.cli("limits", "key", str(key_id), "--total", "0.000010")
    with pytest.raises(openai.APIStatusError) as refused:
        client(gateway, key).chat.completions.create(**CHAT)
    assert refused.value.status_code == 402
    assert "total spend limit (0.000010)" in refused.value.body["message"]
    assert "does not reset" in refused.value.body["message"]
    gateway.cli("limits", "key", str(key_id), "--total", "none", "--per-period", "0.000010")
    gateway.cli("limits", "key", str(key_id), "--timezone", "Asia/Tokyo", "--period", "week")
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(50):  # until the key cache shows the weekly limit
            try:
                client(gateway, key).chat.completions.create(**CHAT)
            except openai.APIStatusError as exc:
                if "weekly" in exc.body["message"]:
                    raise
            asyncio.run(asyncio.sleep(0.05))
    assert "+09:00" in refused.value.body["message"]  # resets at Tokyo's Monday midnight
    # Nothing was held or charged for the refused calls.
    state = assert_ledger_consistent(database_url(gateway), "tz")
    assert state.held == 0 and state.balance == 10_000_000


def test_200_concurrent_calls_never_overspend_a_key_with_room_for_10(make_gateway):
    gateway = make_gateway()
    key = gateway.funded_key("busy", "10")
    key_id = key_id_of(gateway, "busy")
    limit = 10 * MOCK_COST
    gateway.cli("limits", "key", str(key_id), "--per-period", f"0.{limit:06d}")
    results = asyncio.run(fire([gateway.url], key, 200))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 402}, statuses
    admitted = statuses.count(200)
    url = database_url(gateway)
    state = wait_settled(url, "busy", 200)
    assert_ledger_consistent(url, "busy")
    spent = state.usage_cost
    assert spent == admitted * MOCK_COST <= limit
    # Holds (62) are bigger than costs (25): calls arriving while the room is held by
    # calls in flight are refused, as with the balance.
    assert admitted >= limit // 62  # at least as many as it can hold at once
    today = datetime.now(UTC).date().isoformat()
    counters = key_spent(url, key_id)
    assert counters[f"day:{today}@UTC"] == spent


def test_account_budget(make_gateway):
    gateway = make_gateway(FAST)
    key = gateway.funded_key("rich", "1000")
    gateway.cli("limits", "account", "rich", "--budget", f"0.{2 * MOCK_COST + 62:06d}")
    sdk = client(gateway, key)
    codes = []
    for _ in range(6):
        try:
            sdk.chat.completions.create(**CHAT)
            codes.append(200)
        except openai.APIStatusError as exc:
            codes.append(exc.status_code)
            assert "account's monthly budget" in exc.body["message"]
            nxt = (datetime.now(UTC).date().replace(day=28) + timedelta(days=4)).replace(day=1)
            assert f"resets at {nxt.isoformat()}T00:00:00+00:00" in exc.body["message"]
    assert codes[:3] == [200, 200, 200] and codes[-1] == 402


@pytest.mark.parametrize("scope", ["key", "account budget"])
def test_two_gateways_on_postgres_enforce_one_limit(make_gateway, postgres_url, scope):
    """A key's period limit, or its account's budget, holds for 300 concurrent calls spread
    over two processes sharing one PostgreSQL database."""
    gateways = [make_gateway(database=postgres_url) for _ in range(2)]
    key = gateways[0].funded_key("shared", "10")
    key_id = key_id_of(gateways[0], "shared")
    limit = 20 * MOCK_COST
    if scope == "key":
        gateways[0].cli("limits", "key", str(key_id), "--per-period", f"0.{limit:06d}")
    else:
        gateways[0].cli("limits", "account", "shared", "--budget", f"0.{limit:06d}")
    results = asyncio.run(fire([g.url for g in gateways], key, 300))
    statuses = [status for status, _ in results]
    assert set(statuses) <= {200, 402}, statuses
    admitted = statuses.count(200)
    state = wait_settled(postgres_url, "shared", 300)
    assert_ledger_consistent(postgres_url, "shared")
    assert state.usage_cost == admitted * MOCK_COST <= limit
    assert admitted >= (limit - 2 * 16 * 62) // MOCK_COST  # each process may keep a lease
    if scope == "key":
        today = datetime.now(UTC).date().isoformat()
        counters = key_spent(postgres_url, key_id)
        assert counters[f"day:{today}@UTC"] == state.usage_cost
    else:
        engine = make_engine(postgres_url)
        with engine.connect() as conn:
            query = text("SELECT account_id FROM api_keys WHERE id = :k")
            account_id = conn.execute(query, {"k": key_id}).scalar_one()
        engine.dispose()
        counters = key_spent(postgres_url, key_id, f"account:{account_id}")
        month = datetime.now(UTC).strftime("%Y-%m")
        assert [spent for period, spent in counters.items() if month in period] == [
            state.usage_cost
        ]


def test_admin_api_sets_limits_budget_and_alerts(make_gateway):
    import httpx

    gateway = make_gateway(FAST)
    key = gateway.funded_key("api", "10")
    key_id = key_id_of(gateway, "api")
    admin = httpx.Client(
        base_url=gateway.url + "/admin", headers={"authorization": "Bearer admin-test-key"}
    )
    body = {
        "period_limit_micro": 2 * MOCK_COST + 62,
        "limit_period": "month",
        "limit_timezone": "Europe/Berlin",
        "allowed_ips": ["127.0.0.1/32", "::1/128"],
    }
    answer = admin.put(f"/keys/{key_id}/limits", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["allowed_ips"] == ["127.0.0.1/32", "::1/128"]
    sdk = client(gateway, key)
    for _ in range(50):  # wait for the key cache, then spend twice
        try:
            sdk.chat.completions.create(**CHAT)
        except openai.APIStatusError as exc:
            assert "monthly spend limit" in exc.body["message"]
            assert "+01:00" in exc.body["message"]  # Berlin's midnight (winter time)
            break
    else:
        raise AssertionError("no 402")
    # 112 = 2 costs + one hold (62): the third call still fits its hold.
    wait_until(
        lambda: (
            admin.get(f"/keys/{key_id}/limits").json()["spent_this_period_micro"] == 3 * MOCK_COST
        )
    )
    answer = admin.get(f"/keys/{key_id}/limits").json()
    assert answer["period_resets_at"] > 0 and answer["spent_total_micro"] is None
    bad = admin.put(f"/keys/{key_id}/limits", json={**body, "allowed_ips": ["10.0.0.300/8"]})
    assert bad.status_code == 400  # refused by the schema's pattern
    bad = admin.put(f"/keys/{key_id}/limits", json={**body, "limit_timezone": "Mars/Base"})
    assert bad.status_code == 400 and "time zone" in bad.text
    assert admin.put("/accounts/api/budget", json={"budget_micro": 100}).status_code == 200
    assert admin.put("/accounts/nobody/budget", json={"budget_micro": 1}).status_code == 404
    put = admin.put("/accounts/api/alerts", json={"threshold_micro": 5, "webhook": "ftp://x"})
    assert put.status_code == 400
    put = admin.put("/accounts/api/alerts", json={"threshold_micro": 5, "email": "a@b.c"})
    assert put.status_code == 200 and put.json()["threshold_micro"] == 5
    made = admin.post(
        "/keys",
        json={"account": "api", "period_limit_micro": 5_000_000, "allowed_ips": ["10.0.0.0/8"]},
    )
    assert made.status_code == 201, made.text
    shown = admin.get(f"/keys/{made.json()['id']}/limits").json()
    assert shown["period_limit_micro"] == 5_000_000 and shown["limit_period"] == "day"
    assert shown["allowed_ips"] == ["10.0.0.0/8"] and shown["spent_this_period_micro"] == 0


def test_keys_create_with_limits_and_keys_list_shows_the_spend(make_gateway):
    gateway = make_gateway(FAST)
    gateway.cli("accounts", "create", "made")
    gateway.cli("accounts", "topup", "made", "1")
    key = gateway.cli(
        "keys", "create", "--account", "made", "--period-limit", "5", "--ips", "127.0.0.0/8"
    ).splitlines()[-1]
    client(gateway, key).chat.completions.create(**CHAT)
    wait_until(lambda: f"0.{MOCK_COST:06d}/5.000000 daily" in gateway.cli("keys", "list"))
    assert "127.0.0.0/8" in gateway.cli("limits", "list")
    with pytest.raises(AssertionError, match="not an IP range"):
        gateway.cli("keys", "create", "--account", "made", "--ips", "nope")
    assert len(gateway.cli("keys", "list", "--account", "made").splitlines()) == 2  # no new key


def test_periods_start_at_the_zones_midnight():
    from tokone.core.domain.spend_limits import current_period

    now = datetime(2026, 3, 29, 12, 0, tzinfo=UTC).timestamp()  # a Sunday; DST in Europe
    day = current_period("day", "Europe/Berlin", now)
    assert day.label == "day:2026-03-29@Europe/Berlin"
    assert day.resets_at - day.start == 23 * 3600  # the night the clocks go forward
    assert day.reset_text() == "2026-03-30T00:00:00+02:00"
    week = current_period("week", "UTC", now)
    assert week.label == "week:2026-03-23@UTC"
    assert week.reset_text() == "2026-03-30T00:00:00+00:00"
    month = current_period(
        "month", "America/New_York", datetime(2026, 12, 31, 23, 0, tzinfo=UTC).timestamp()
    )
    assert month.label == "month:2026-12-01@America/New_York"
    assert month.reset_text() == "2027-01-01T00:00:00-05:00"
    assert current_period("total", "UTC", now).resets_at is None


def test_leases_of_a_killed_process_lapse(make_gateway):
    from ledger_checks import with_billing

    gateway = with_billing(make_gateway(start=False), "hold_timeout_seconds = 1")
    gateway.start()
    key = gateway.funded_key("crash", "10")
    key_id = key_id_of(gateway, "crash")
    gateway.cli("limits", "key", str(key_id), "--per-period", "1")
    url = database_url(gateway)

    def traffic() -> None:
        with contextlib.suppress(Exception):  # the calls in flight fail when it is killed
            asyncio.run(fire([gateway.url], key, 400))

    busy = threading.Thread(target=traffic)
    busy.start()
    wait_until(lambda: key_spent(url, key_id)["_leased"] > 0)  # a lease on the limit
    gateway.stop(kill=True)  # mid-traffic
    busy.join()
    gateway.start()  # its sweep drops the dead process's lease after the timeout
    wait_until(lambda: key_spent(url, key_id)["_leased"] == 0)
    # Every call that the dead process settled is counted; nothing is counted twice.
    today = datetime.now(UTC).date().isoformat()
    assert key_spent(url, key_id)[f"day:{today}@UTC"] <= 400 * MOCK_COST
