"""Spend limits, IP allow-lists, alerts and budgets in the console, in a real browser.

A user makes a key with a small daily limit in the console and calls it with the openai SDK
until the key's limit refuses with 402 (the key page shows what it spent); bad amounts and
ranges are refused with a clear message and create nothing; a key whose allow-list leaves
out 127.0.0.1 gets 403. The Settings page sets low-balance alerts and lists their deliveries;
an admin sets an account's budget (audited, like the admin API's limit routes); with the
plugins disabled the fields are gone. Screenshots go to the test's tmp dir and
/tmp/console-limit-shots/.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import ADMIN, FAST_REFRESH, MOCK_PROVIDER, Gateway, start_gateway
from console_fixtures import (
    PASSWORD,
    Shots,
    browser,
    chat,
    cli,
    eventually,
    needs_chromium,
    page,
    shot,
    sign_in,
    sign_up,
    sql,
)
from test_alerts import Receiver
from tokone.plugins.console.pages import money

SHOTS = Path("/tmp/console-limit-shots")
ADMIN_EMAIL = "root@example.com"
CONFIG = (
    MOCK_PROVIDER
    + """
[plugins.console]
signup_credit = "1"

[plugins.alerts]
scan_seconds = 0.2
private_webhooks = true
"""
    + FAST_REFRESH
)
SMALL = {"max_tokens": 20}
"""Calls with a small output cap, so a small limit holds a few of them."""

pytestmark = needs_chromium
__all__ = ["browser", "page", "shot"]  # fixtures, used by name


@pytest.fixture(scope="module")
def console_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the mock model, the console ($1 sign-up credit), every limit plugin
    and an admin user."""
    gw = start_gateway(tmp_path_factory.mktemp("console-limits"), CONFIG)
    cli(gw, "users", "create", ADMIN_EMAIL, "--admin", "--password-stdin", input=PASSWORD)
    yield gw
    gw.stop()


def new_key(page: Any, name: str, **fields: str) -> str:
    """Create a key on the keys page with the given form fields; return it (shown once)."""
    page.goto("/keys")
    page.fill("input[name=name]", name)
    for field, value in fields.items():
        if field == "limit_period":
            page.select_option(f"select[name={field}]", value)
        else:
            page.fill(f"[name={field}]", value)
    page.click("button:has-text('Create key')")
    page.wait_for_selector("#new-key")
    value: str = page.input_value("#new-key")
    return value


def key_row(gateway: Gateway, name: str) -> dict[str, Any]:
    """The key named `name` in the database."""
    (row,) = sql(gateway, "SELECT * FROM api_keys WHERE name = :n", n=name)
    return row


def error_text(page: Any) -> str:
    """The error message the page shows."""
    return page.text_content(".alert.error") or ""


def test_daily_limit_refuses_with_402_and_the_key_page_shows_the_spend(
    page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    gw = console_gateway
    sign_up(page, "limits@example.com")
    shot(page, "keys-form")
    page.fill("input[name=name]", "ci-daily")
    page.fill("input[name=limit_amount]", "0.0002")
    page.select_option("select[name=limit_period]", "day")
    shot(page, "create-with-limit")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("#new-key")
    key = page.input_value("#new-key")
    row = key_row(gw, "ci-daily")
    assert (row["period_limit"], row["limit_period"], row["spend_limit"]) == (200, "day", None)

    admitted = 0
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(30):
            chat(gw, key, **SMALL)
            admitted += 1
    assert refused.value.status_code == 402
    message = refused.value.body["message"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert "API key's daily spend limit (0.000200)" in message
    assert "not the account's balance" in message and f"resets at {tomorrow}T00:00:00" in message
    assert admitted >= 1

    def spend_shown() -> tuple[int, str]:
        costs = sql(
            gw, "SELECT cost FROM usage_records WHERE key_id = :k AND status = 200", k=row["id"]
        )
        spent = sum(r["cost"] for r in costs)
        page.goto(f"/keys/{row['id']}")
        shown = page.text_content("#period-limit") or ""
        assert len(costs) == admitted and f"{money(spent)} spent of 0.0002 this day" in shown
        return spent, shown

    spent, shown = eventually(spend_shown)
    assert 0 < spent <= 200
    assert f"resets {tomorrow} 00:00:00 UTC" in shown
    shot(page, "key-page-at-limit")
    page.goto("/keys")
    listed = page.text_content(f"tr[data-key-id='{row['id']}'] td.limit") or ""
    assert f"0.{spent:06d}/0.000200 daily" in listed and f"resets {tomorrow}" in listed
    shot(page, "keys-list-limit")

    # The owner raises the limit on the key page; the key works again.
    page.goto(f"/keys/{row['id']}")
    page.fill("input[name=limit_amount]", "1")
    page.click("button:has-text('Save limits')")
    page.wait_for_selector(".alert.ok")
    assert "1.00 this day" in (page.text_content("#period-limit") or "")
    shot(page, "key-limit-raised")

    def works_again() -> bool:
        try:
            return bool(chat(gw, key, **SMALL).choices)
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            raise AssertionError("still refused") from None

    eventually(works_again)


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        pytest.param("limit_amount", "0.0000001", "at most 6 decimal places", id="tiny"),
        pytest.param("limit_amount", "abc", "not an amount: 'abc'", id="word"),
        pytest.param("limit_total", "-1", "cannot be negative", id="negative"),
        pytest.param("allowed_ips", "10.0.0.0/33", "not an IP range: '10.0.0.0/33'", id="prefix"),
        pytest.param(
            "allowed_ips", "127.0.0.1/32\nlocalhost", "not an IP range: 'localhost'", id="name"
        ),
    ],
)
def test_bad_amounts_and_ranges_are_refused_and_create_nothing(
    page: Any,
    console_gateway: Gateway,
    shot: Shots,
    request: pytest.FixtureRequest,
    field: str,
    value: str,
    says: str,
) -> None:
    gw = console_gateway
    who = request.node.callspec.id
    email = f"bad-{who}@example.com"
    sign_up(page, email)
    before = sql(gw, "SELECT COUNT(*) AS n FROM api_keys")[0]["n"]
    page.fill("input[name=name]", "refused")
    page.fill(f"[name={field}]", value)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("button:has-text('Create key')")
    assert answer.value.status == 400
    assert says in error_text(page)
    assert page.input_value(f"[name={field}]") == value  # the form keeps what was typed
    assert page.input_value("input[name=name]") == "refused"
    assert not page.query_selector("#new-key")
    assert sql(gw, "SELECT COUNT(*) AS n FROM api_keys")[0]["n"] == before
    if who in ("word", "name"):
        shot(page, "refused")

    # The same checks on the key page: the key's limits stay as they were.
    key = new_key(page, "kept", limit_total="2")
    row = key_row_of(gw, email, "kept")
    page.goto(f"/keys/{row['id']}")
    page.fill(f"[name={field}]", value)
    page.click("button:has-text('Save limits')")
    assert says in error_text(page)
    after = key_row_of(gw, email, "kept")
    assert (after["spend_limit"], after["period_limit"], after["allowed_ips"]) == (
        2_000_000,
        None,
        "",
    )
    assert chat(gw, key, **SMALL).choices


def key_row_of(gateway: Gateway, email: str, name: str) -> dict[str, Any]:
    """The key named `name` of the account of user `email`."""
    (row,) = sql(
        gateway,
        "SELECT k.* FROM api_keys k JOIN users u ON u.account_id = k.account_id "
        "WHERE u.email = :e AND k.name = :n",
        e=email,
        n=name,
    )
    return row


def test_ip_allow_list_without_127_0_0_1_gets_403(
    page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    gw = console_gateway
    sign_up(page, "ips@example.com")
    key = new_key(page, "office", allowed_ips="10.0.0.0/8\n2001:db8::/32, 192.168.1.7/16")
    row = key_row_of(gw, "ips@example.com", "office")
    assert row["allowed_ips"] == "10.0.0.0/8,2001:db8::/32,192.168.0.0/16"  # normalised
    with pytest.raises(openai.PermissionDeniedError) as refused:
        chat(gw, key, **SMALL)
    assert refused.value.status_code == 403
    assert "127.0.0.1" in refused.value.body["message"]
    assert "IP allow-list" in refused.value.body["message"]
    page.goto(f"/keys/{row['id']}")
    assert "10.0.0.0/8, 2001:db8::/32, 192.168.0.0/16" in (page.text_content("#allowed-ips") or "")
    shot(page, "key-page-ips")
    page.goto("/")
    assert page.text_content("#balance") == "1.00"  # never charged

    page.goto(f"/keys/{row['id']}")
    page.fill("textarea[name=allowed_ips]", "127.0.0.0/8\n::1")
    page.click("button:has-text('Save limits')")
    page.wait_for_selector(".alert.ok")

    def allowed() -> bool:
        try:
            return bool(chat(gw, key, **SMALL).choices)
        except openai.PermissionDeniedError:
            raise AssertionError("still refused") from None

    eventually(allowed)


def test_alert_settings_and_their_deliveries(
    page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    gw = console_gateway
    receiver = Receiver()
    sign_up(page, "alerts@example.com")
    key = new_key(page, "app")
    page.goto("/settings")
    for field, value, says in (
        ("alert_threshold", "0.0000001", "at most 6 decimal places"),
        ("alert_threshold", "-2", "cannot be negative"),
    ):
        page.fill(f"input[name={field}]", value)
        page.click("button:has-text('Save alerts')")
        assert says in error_text(page)
    account = sql(
        gw,
        "SELECT a.* FROM accounts a JOIN users u ON u.account_id = a.id WHERE u.email = :e",
        e="alerts@example.com",
    )[0]
    assert account["alert_threshold"] is None
    page.fill("input[name=alert_threshold]", "0.99999")
    page.fill("input[name=alert_webhook]", receiver.url)
    page.fill("input[name=alert_email]", "")
    page.click("button:has-text('Save alerts')")
    assert "Alert settings saved" in (page.text_content(".alert.ok") or "")
    assert page.input_value("input[name=alert_threshold]") == "0.99999"
    assert chat(gw, key, **SMALL).choices  # 1.00 -> below 0.99999

    def delivered() -> bool:
        page.goto("/settings")
        cells = page.text_content("table.deliveries tbody") or ""
        assert "delivered" in cells and receiver.url in cells, cells
        return True

    eventually(delivered, timeout=15)
    assert len(receiver.events()) == 1
    assert "x-tokone-signature" in receiver.requests[0][0]
    shot(page, "settings-alerts")
    receiver.server.shutdown()


def test_admin_sets_a_budget_and_sees_key_limits_audited(
    browser: Any, page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    gw = console_gateway
    sign_up(page, "budget@example.com")
    new_key(page, "capped", limit_amount="0.5", limit_period="week", limit_total="3")
    account = sql(
        gw,
        "SELECT a.* FROM accounts a JOIN users u ON u.account_id = a.id WHERE u.email = :e",
        e="budget@example.com",
    )[0]
    admin = browser.new_context(base_url=gw.url).new_page()
    sign_in(admin, ADMIN_EMAIL)
    admin.wait_for_url(f"{gw.url}/")
    admin.goto(f"/manage/accounts/{account['id']}")
    limit_cell = admin.inner_text("td.limit")  # one line per limit
    assert limit_cell.splitlines() == ["0.000000/0.500000 weekly", "0.000000/3.000000 total"]
    admin.fill("#form-budget input[name=budget]", "abc")
    admin.click("#form-budget button:has-text('Set')")
    assert "not an amount: 'abc'" in error_text(admin)
    admin.fill("#form-budget input[name=budget]", "0.000050")
    admin.select_option("#form-budget select[name=period]", "day")
    admin.click("#form-budget button:has-text('Set')")
    assert "Budget set to 0.000050 daily" in (admin.text_content(".alert.ok") or "")
    assert admin.text_content("#budget") == "0.00005"
    shot(admin, "admin-budget")
    (entry,) = sql(
        gw, "SELECT * FROM audit_log WHERE action = 'account.budget' AND actor = :a", a=ADMIN_EMAIL
    )
    assert entry["target"] == f"account:{account['name']}"
    assert '"budget": 50' in entry["after"] and '"period": "day"' in entry["after"]
    admin.context.close()

    # The budget (not the key's limit) refuses the account's calls.
    key = new_key(page, "under-budget")
    with pytest.raises(openai.APIStatusError) as refused:
        for _ in range(10):
            chat(gw, key, **SMALL)
    assert refused.value.status_code == 402
    assert "account's daily budget (0.000050)" in refused.value.body["message"]

    # The admin API's limit routes are audited too (actor admin-api).
    key_id = key_row_of(gw, "budget@example.com", "capped")["id"]
    name = account["name"]
    with httpx.Client(base_url=gw.url, headers=ADMIN) as api:
        assert api.put(f"/admin/keys/{key_id}/limits", json={"period_limit_micro": 7}).is_success
        assert api.put(f"/admin/accounts/{name}/budget", json={"budget_micro": None}).is_success
        answer = api.put(f"/admin/accounts/{name}/alerts", json={"threshold_micro": 5})
        assert answer.is_success
        audit = api.get("/admin/audit", params={"actor": "admin-api"}).json()
    actions = {(e["action"], e["target"]) for e in audit}
    assert {
        ("key.limits", f"key:{key_id}"),
        ("account.budget", f"account:{name}"),
        ("account.alerts", f"account:{name}"),
    } <= actions
    limits = next(e for e in audit if e["action"] == "key.limits")
    assert limits["before"]["period_limit_micro"] == 500_000
    assert limits["after"]["period_limit_micro"] == 7


def test_disabled_plugins_hide_the_fields(browser: Any, tmp_path: Path, shot: Shots) -> None:
    gw = start_gateway(
        tmp_path,
        MOCK_PROVIDER
        + '[plugins]\ndisable = ["key_limits", "ip_allow", "alerts"]\n'
        + '[plugins.console]\nsignup_credit = "1"\n',
    )
    try:
        cli(gw, "users", "create", ADMIN_EMAIL, "--admin", "--password-stdin", input=PASSWORD)
        user = browser.new_context(base_url=gw.url).new_page()
        sign_up(user, "plain@example.com")
        for name in ("limit_amount", "limit_total", "limit_period", "allowed_ips"):
            assert not user.query_selector(f"[name={name}]")
        assert "Limit" not in (user.text_content("table.keys thead") or "")
        new_key(user, "plain")
        user.goto(f"/keys/{key_row(gw, 'plain')['id']}")
        assert not user.query_selector("#form-limits")
        user.goto("/settings")
        assert not user.query_selector("#form-alerts")
        shot(user, "settings-without-alerts")
        admin = browser.new_context(base_url=gw.url).new_page()
        sign_in(admin, ADMIN_EMAIL)
        admin.wait_for_url(f"{gw.url}/")
        account_id = sql(gw, "SELECT account_id FROM users WHERE email = 'plain@example.com'")
        admin.goto(f"/manage/accounts/{account_id[0]['account_id']}")
        assert not admin.query_selector("#form-budget") and not admin.query_selector("#budget")
    finally:
        gw.stop()
