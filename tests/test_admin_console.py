"""The admin console in a real browser: Playwright driving Debian's Chromium against `tokone serve`.

An operator who never used the CLI runs the gateway from `/manage`: tops up an account (the
user sees it on their dashboard), re-prices a group (the user's Pricing page and the next
call's charge follow), switches a failing channel off (calls fail over), hands out a batch of
codes (downloaded as CSV, one redeemed by a user), and reads back the audit log — which the
admin API (`GET /admin/audit`) and `tokone audit` show too. A signed-in `user` gets 403 on
every admin URL (walked from the router itself, so a new page cannot be forgotten).
Screenshots of every admin page go to the test's tmp dir and /tmp/admin-shots/.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import FAST_REFRESH, Gateway, start_gateway, wait_until
from console_fixtures import (
    PASSWORD,
    Shots,
    browser,
    cli,
    create_key,
    needs_chromium,
    shot,
    sign_in,
    sql,
)
from tokone.core.config import load_config

SHOTS = Path("/tmp/admin-shots")
ADMIN_EMAIL = "root@example.com"
ADMIN_API = {"Authorization": "Bearer admin-test-key"}
CONFIG = (
    """
[[providers]]
name = "primary"
adapter = "mock"
models = ["mock-1"]
priority = 10

[[providers]]
name = "backup"
adapter = "mock"
models = ["mock-1"]
priority = 0

[plugins.console]
signup_credit = "1"
"""
    + FAST_REFRESH
)

pytestmark = needs_chromium
__all__ = ["browser", "shot"]  # fixtures, used by name


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with two mock channels (primary first), the console and an admin user."""
    gateway = start_gateway(tmp_path_factory.mktemp("admin-console"), CONFIG)
    cli(gateway, "users", "create", ADMIN_EMAIL, "--admin", "--password-stdin", input=PASSWORD)
    yield gateway
    gateway.stop()


def new_page(browser: Any, gateway: Gateway) -> Any:
    """A page in a fresh browser context (no cookies)."""
    context = browser.new_context(base_url=gateway.url, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


@pytest.fixture
def admin(browser: Any, gw: Gateway) -> Iterator[Any]:
    """A page signed in as the admin."""
    page = new_page(browser, gw)
    sign_in(page, ADMIN_EMAIL)
    page.wait_for_url(f"{gw.url}/")
    yield page
    page.context.close()


def sign_up(browser: Any, gateway: Gateway, email: str) -> Any:
    """A new user signed up through the console (with its $1 credit); their page."""
    page = new_page(browser, gateway)
    page.goto("/signup")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("button[type=submit]:has-text('Create my account')")
    page.wait_for_url("**/keys")
    return page


def chat(gateway: Gateway, key: str) -> Any:
    """One chat completion with the openai SDK against mock-1."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(
        model="mock-1", messages=[{"role": "user", "content": "Hello from the admin test"}]
    )


def last_call(gateway: Gateway, account: str, count: int) -> dict[str, Any]:
    """The newest usage record of `account` once it has `count` of them (settled)."""

    def found() -> dict[str, Any] | None:
        rows = sql(
            gateway,
            "SELECT u.* FROM usage_records u JOIN accounts a ON a.id = u.account_id "
            "WHERE a.name = :name ORDER BY u.id",
            name=account,
        )
        return rows[-1] if len(rows) >= count else None

    return wait_until(found, what=f"{count} usage records of {account}")


def open_account(page: Any, query: str) -> None:
    """Search the accounts page for `query` and open the first hit."""
    page.goto("/manage/accounts")
    page.fill("input[name=q]", query)
    page.click("button:has-text('Search')")
    page.click("table.accounts tbody a >> nth=0")
    page.wait_for_selector("#balance")


def balance(page: Any) -> float:
    """The balance the current page shows."""
    return float(page.text_content("#balance") or "nan")


def csrf_token(html: str) -> str:
    """The CSRF token of a console page's forms."""
    found = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def admin_routes(gateway: Gateway) -> list[tuple[str, str]]:
    """(method, path template) of every admin console route, from its router."""
    from tokone.core.gateway import Gateway as Core
    from tokone.plugins.console.admin_pages import AdminPages
    from tokone.plugins.console.pages import Console

    router = AdminPages(Console(Core(load_config(str(gateway.config_path))))).router()
    return [
        (method, route.path)
        for route in router.routes
        for method in sorted(route.methods)
        if method in ("GET", "POST")
    ]


def test_every_admin_url_refuses_a_user(browser: Any, gw: Gateway, shot: Shots) -> None:
    page = sign_up(browser, gw, "mallory@example.com")
    assert page.locator("header a:has-text('Admin')").count() == 0  # no admin nav for users
    account = sql(gw, "SELECT id FROM accounts WHERE name = 'mallory@example.com'")[0]["id"]
    user_id = sql(gw, "SELECT id FROM users WHERE email = 'mallory@example.com'")[0]["id"]
    values = {
        "{account_id:int}": str(account),
        "{user_id:int}": str(user_id),
        "{key_id:int}": "1",
        "{code_id:int}": "1",
        "{name:str}": "default",
    }
    routes = admin_routes(gw)
    assert len(routes) >= 18, routes
    with httpx.Client(base_url=gw.url) as client, httpx.Client(base_url=gw.url) as anonymous:
        token = csrf_token(client.get("/login").text)
        signed_in = client.post(
            "/login",
            data={"email": "mallory@example.com", "password": PASSWORD, "_csrf_token": token},
        )
        assert signed_in.status_code == 303
        token = csrf_token(client.get("/keys").text)
        for method, template in routes:
            path = template
            for name, value in values.items():
                path = path.replace(name, value)
            path = path.replace("{action:str}", "topup" if "/accounts/" in path else "disable")
            data = {"_csrf_token": token, "amount": "100", "note": "x", "multiplier": "0"}
            answer = client.request(method, path, data=data if method == "POST" else None)
            assert answer.status_code == 403, (method, path, answer.status_code)
            assert "operators of this gateway" in answer.text
            if method == "GET":
                away = anonymous.get(path)
                assert away.status_code == 303 and away.headers["location"].startswith("/login")
    page.goto("/manage/accounts")
    shot(page, "user-refused")
    assert "Admins only" in page.content()
    rows = sql(gw, "SELECT balance FROM accounts WHERE id = :id", id=account)
    assert rows[0]["balance"] == 1_000_000  # nothing went through
    assert not sql(gw, "SELECT * FROM audit_log WHERE actor = 'mallory@example.com'")
    page.context.close()


def test_top_up_seen_by_user_and_audited(
    browser: Any, gw: Gateway, admin: Any, shot: Shots
) -> None:
    user = sign_up(browser, gw, "ada@example.com")
    admin.goto("/")
    assert admin.locator("header a:has-text('Admin')").count() == 1
    admin.click("header a:has-text('Admin')")
    admin.wait_for_url("**/manage")
    shot(admin, "overview")
    open_account(admin, "ADA@example")  # by e-mail, any case
    shot(admin, "account")
    assert balance(admin) == 1.0

    admin.fill("#form-topup input[name=amount]", "2.5")
    admin.fill("#form-topup input[name=note]", "invoice 42")
    admin.click("#form-topup button")
    admin.wait_for_selector(".alert.ok")
    assert balance(admin) == 3.5
    user.goto("/")
    assert float(user.text_content("#balance") or "nan") == 3.5

    # amounts are validated as the CLI validates them: no floats, at most 6 places
    admin.fill("#form-topup input[name=amount]", "0.0000001")
    admin.click("#form-topup button")
    admin.wait_for_selector(".alert.error")
    assert "at most 6 decimal places" in (admin.text_content(".alert.error") or "")
    shot(admin, "bad-amount")
    admin.fill("#form-adjust input[name=amount]", "-0.5")
    admin.fill("#form-adjust input[name=note]", "goodwill reversed")
    admin.click("#form-adjust button")
    admin.wait_for_selector(".alert.ok")
    assert balance(admin) == 3.0
    # an adjustment without a note is refused by the server too (not only by the browser)
    admin.evaluate("document.querySelector('#form-adjust input[name=note]').required = false")
    admin.fill("#form-adjust input[name=amount]", "1")
    admin.fill("#form-adjust input[name=note]", "")
    admin.click("#form-adjust button")
    admin.wait_for_selector(".alert.error")
    assert "needs a note" in (admin.text_content(".alert.error") or "")

    # refund a charged call: at most what it cost, once
    key = create_key(user, "ada-key")
    chat(gw, key)
    call = last_call(gw, "ada@example.com", 1)
    open_account(admin, "ada@example.com")
    charged = balance(admin)
    admin.fill("#form-refund input[name=request_id]", call["request_id"])
    admin.fill("#form-refund input[name=amount]", "1000")
    admin.click("#form-refund button")
    admin.wait_for_selector(".alert.error")
    assert "exceeds" in (admin.text_content(".alert.error") or "")
    cost = call["cost"] / 1_000_000
    admin.fill("#form-refund input[name=request_id]", call["request_id"])
    admin.fill("#form-refund input[name=amount]", f"{call['cost'] / 1_000_000:.6f}")
    admin.click("#form-refund button")
    admin.wait_for_selector(".alert.ok")
    assert balance(admin) == pytest.approx(charged + cost)
    admin.fill("#form-refund input[name=request_id]", call["request_id"])
    admin.fill("#form-refund input[name=amount]", "0.000001")
    admin.click("#form-refund button")
    admin.wait_for_selector(".alert.error")
    assert "already refunded" in (admin.text_content(".alert.error") or "")

    # override, then clear it
    admin.fill("#form-override input[name=multiplier]", "0.7")
    admin.click("#form-override button:has-text('Set')")
    admin.wait_for_selector(".alert.ok")
    assert admin.text_content("#override") == "0.7"
    admin.click("#form-override button:has-text('Clear')")
    admin.wait_for_selector(".alert.ok")
    assert admin.text_content("#override") != "0.7"

    # disable the key: the SDK call is refused; the user can be disabled and enabled
    admin.click("tr[data-key-id] form[action$='/disable'] button")
    admin.wait_for_selector(".alert.ok")

    def refused() -> bool:
        try:
            chat(gw, key)
        except openai.PermissionDeniedError:
            return True
        return False

    wait_until(refused, what="disabled key refused")
    admin.once("dialog", lambda d: d.accept())
    admin.click("tr[data-user-id] button:has-text('Disable')")
    admin.wait_for_selector(".alert.ok")
    user.goto("/keys")
    assert user.url.endswith("/login?next=/keys")  # their session ended
    admin.click("tr[data-user-id] button:has-text('Enable')")
    admin.wait_for_selector(".alert.ok")
    admin.click("tr[data-user-id] button:has-text('Reset password')")
    admin.wait_for_selector(".alert.ok")
    link = re.search(r"(http://\S+/reset\?token=\S+)", admin.text_content(".alert.ok") or "")
    assert link
    shot(admin, "reset-link")
    user.goto(link.group(1))
    user.fill("input[name=password]", "a brand new password")
    user.fill("input[name=password2]", "a brand new password")
    user.click("main button[type=submit]")
    sign_in(user, "ada@example.com", "a brand new password")
    user.wait_for_url(f"{gw.url}/")

    admin.goto("/manage/audit")
    shot(admin, "audit")
    page_text = admin.text_content("table.audit") or ""
    for action in (
        "account.topup",
        "account.adjust",
        "account.refund",
        "account.override",
        "key.disable",
        "user.disable",
        "user.enable",
        "user.reset_link",
    ):
        assert action in page_text, action
    assert ADMIN_EMAIL in page_text and "127.0.0.1" in page_text
    entries = httpx.get(
        f"{gw.url}/admin/audit", headers=ADMIN_API, params={"action": "account.topup"}
    ).json()
    topup = next(e for e in entries if e["target"] == "account:ada@example.com")
    assert topup["actor"] == ADMIN_EMAIL and topup["ip"] == "127.0.0.1"
    assert topup["before"] == {"balance": "1.000000"}
    assert topup["after"]["balance"] == "3.500000" and topup["after"]["note"] == "invoice 42"
    out = cli(gw, "audit", "--action", "account.", "--json")
    assert {e["action"] for e in json.loads(out)} >= {"account.topup", "account.refund"}
    user.context.close()


def test_repricing_a_group_changes_prices_and_charges(
    browser: Any, gw: Gateway, admin: Any, shot: Shots
) -> None:
    user = sign_up(browser, gw, "grace@example.com")
    key = create_key(user, "grace-key")
    admin.goto("/manage/groups")
    admin.fill("input[name=name]", "gold")
    admin.fill("form[action='/manage/groups'] input[name=multiplier]", "1")
    admin.click("button:has-text('Create group')")
    admin.wait_for_selector("tr[data-group=gold]")
    open_account(admin, "grace@example.com")
    admin.select_option("#form-group select[name=group]", "gold")
    admin.click("#form-group button")
    admin.wait_for_selector(".alert.ok")
    assert admin.text_content("#group") == "gold"
    admin.goto("/manage/groups")
    assert (admin.text_content("tr[data-group=gold] td:nth-child(4)") or "").strip() == "1"

    def price_is(value: str) -> bool:
        user.goto("/prices")
        return value in (user.text_content("main") or "")

    wait_until(lambda: price_is("gold"), what="user in gold")
    chat(gw, key)
    first = last_call(gw, "grace@example.com", 1)
    admin.fill("tr[data-group=gold] input[name=multiplier]", "0.25")
    admin.click("tr[data-group=gold] button")
    admin.wait_for_selector(".alert.ok")
    shot(admin, "groups")
    wait_until(lambda: price_is("0.25"), what="the new price on the Pricing page")
    chat(gw, key)
    second = last_call(gw, "grace@example.com", 2)
    assert first["cost"] > 0 and second["cost"] * 4 == pytest.approx(first["cost"], abs=4)
    entries = httpx.get(f"{gw.url}/admin/audit", headers=ADMIN_API, params={"target": "group:gold"})
    assert [e["action"] for e in entries.json()] == ["group.set", "group.create"]
    assert entries.json()[0]["before"] == {"multiplier": 1.0}
    user.context.close()


def test_disabling_a_channel_fails_over(browser: Any, gw: Gateway, admin: Any, shot: Shots) -> None:
    user = sign_up(browser, gw, "linus@example.com")
    key = create_key(user, "linus-key")
    chat(gw, key)
    assert last_call(gw, "linus@example.com", 1)["provider"] == "primary"
    admin.goto("/manage/channels")
    admin.fill("tr[data-channel=primary] input[name=reason]", "upstream on fire")
    admin.click("tr[data-channel=primary] button:has-text('Disable')")
    admin.wait_for_selector(".alert.ok")
    assert "disabled" in (admin.text_content("tr[data-channel=primary]") or "")
    shot(admin, "channels")
    chat(gw, key)
    assert last_call(gw, "linus@example.com", 2)["provider"] == "backup"
    admin.goto("/manage")
    assert "upstream on fire" in (admin.text_content("main") or "")
    shot(admin, "overview-channel-off")
    admin.goto("/manage/usage?channel=backup")
    shot(admin, "usage")
    assert "linus@example.com" in (admin.text_content("table.calls") or "")
    admin.goto("/manage/usage?channel=backup&account=linus%40example.com")
    assert admin.text_content("#total-requests") == "1"
    with admin.expect_download() as download:
        admin.click("#csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["account"], r["provider"]) for r in rows] == [("linus@example.com", "backup")]
    admin.goto("/manage/channels")
    admin.click("tr[data-channel=backup] button:has-text('Test')")
    admin.wait_for_selector("#test-result")
    assert admin.text_content("#test-status") == "200"
    assert "ms" in (admin.text_content("#test-latency") or "")
    shot(admin, "channel-test")
    tests = sql(gw, "SELECT * FROM usage_records WHERE tier = 'test'")
    assert [(t["provider"], t["cost"], t["status"]) for t in tests] == [("backup", 0, 200)]
    admin.click("tr[data-channel=primary] button:has-text('Enable')")
    admin.wait_for_selector(".alert.ok")
    chat(gw, key)
    assert last_call(gw, "linus@example.com", 3)["provider"] == "primary"
    user.context.close()


def test_code_batch_created_downloaded_and_redeemed(
    browser: Any, gw: Gateway, admin: Any, shot: Shots
) -> None:
    user = sign_up(browser, gw, "hedy@example.com")
    admin.goto("/manage/codes")
    admin.fill("input[name=amount]", "5")
    admin.fill("input[name=count]", "3")
    admin.fill("input[name=batch]", "spring-promo")
    admin.click("button:has-text('Create codes')")
    admin.wait_for_selector("#new-codes")
    shot(admin, "codes-shown")
    shown = (admin.input_value("#new-codes") or "").split()
    assert len(shown) == 3 and all(c.startswith("tkc-") for c in shown)
    with admin.expect_download() as download:
        admin.click("#download-csv")
    assert download.value.suggested_filename == "tokone-spring-promo.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["code"] for r in rows] == shown and {r["amount"] for r in rows} == {"5"}

    user.goto("/topup")
    user.fill("input[name=code]", rows[0]["code"])
    user.click("button:has-text('Redeem')")
    user.wait_for_selector(".alert.ok")
    assert float(user.text_content("#balance") or "nan") == 6.0

    admin.goto("/manage/codes")
    assert shown[0] not in admin.content()  # never shown again
    redeemed = admin.locator("tr:has-text('hedy@example.com')")
    assert "redeemed" in (redeemed.text_content() or "")
    admin.locator(
        "tr:has-text('spring-promo'):has-text('unused') button:has-text('Disable')"
    ).first.click()
    admin.wait_for_selector(".alert.ok")
    shot(admin, "codes")
    disabled_prefix = (
        admin.locator("tr:has-text('spring-promo'):has-text('disabled') code").text_content() or ""
    ).rstrip("…")
    disabled_code = next(c for c in shown if c.startswith(disabled_prefix))
    user.goto("/topup")
    user.fill("input[name=code]", disabled_code)
    user.click("button:has-text('Redeem')")
    user.wait_for_selector(".alert.error")
    assert "disabled" in (user.text_content(".alert.error") or "")
    user.context.close()


def test_admin_api_changes_are_audited(gw: Gateway) -> None:
    created = httpx.post(
        f"{gw.url}/admin/accounts", headers=ADMIN_API, json={"name": "api-made", "group": "vip"}
    )
    assert created.status_code == 201, created.text
    httpx.post(
        f"{gw.url}/admin/accounts/api-made/topups", headers=ADMIN_API, json={"amount": "3"}
    ).raise_for_status()
    entries = httpx.get(
        f"{gw.url}/admin/audit", headers=ADMIN_API, params={"target": "account:api-made"}
    ).json()
    assert [(e["actor"], e["action"]) for e in entries] == [
        ("admin-api", "account.topup"),
        ("admin-api", "account.create"),
    ]
    assert entries[0]["after"]["balance"] == "3.000000"
    assert httpx.get(f"{gw.url}/admin/audit").status_code == 401
    httpx.post(
        f"{gw.url}/admin/providers/backup/disable", headers=ADMIN_API, json={"reason": "test"}
    ).raise_for_status()
    httpx.post(f"{gw.url}/admin/providers/backup/enable", headers=ADMIN_API).raise_for_status()
    switched = httpx.get(
        f"{gw.url}/admin/audit", headers=ADMIN_API, params={"target": "channel:backup"}
    ).json()
    assert [e["action"] for e in switched][:2] == ["channel.enable", "channel.disable"]
    batch = httpx.post(
        f"{gw.url}/admin/codes",
        headers=ADMIN_API,
        json={"amount": "2", "count": 2, "batch": "api-batch", "expires_in_days": 1},
    )
    assert batch.status_code == 201, batch.text
    listed = [
        c
        for c in httpx.get(f"{gw.url}/admin/codes", headers=ADMIN_API).json()
        if c["batch"] == "api-batch"
    ]
    assert [c["state"] for c in listed] == ["unused", "unused"] and listed[0]["expires_at"]
    off = httpx.post(f"{gw.url}/admin/codes/{listed[0]['id']}/disable", headers=ADMIN_API)
    assert off.status_code == 200 and off.json()["state"] == "disabled"
    again = httpx.post(f"{gw.url}/admin/codes/{listed[0]['id']}/disable", headers=ADMIN_API)
    assert again.status_code == 409
    # the CLI's changes are in the same log
    gw.cli("accounts", "topup", "api-made", "1")
    gw.cli("groups", "set", "vip", "0.5")
    shown = cli(gw, "audit", "--actor", "cli", "--json")
    assert {(e["action"], e["target"]) for e in json.loads(shown)} >= {
        ("account.topup", "account:api-made"),
        ("group.set", "group:vip"),
    }


def test_users_promote_gives_the_admin_console(browser: Any, gw: Gateway, shot: Shots) -> None:
    page = sign_up(browser, gw, "barbara@example.com")
    page.goto("/manage")
    assert "Admins only" in page.content()
    assert "barbara@example.com: admin" in cli(gw, "users", "promote", "barbara@example.com")
    page.goto("/manage")
    assert page.locator("nav.subnav").count() == 1
    for path, name in (("/manage/accounts", "accounts"), ("/manage/usage", "usage-all")):
        page.goto(path)
        shot(page, name)
    assert "user.promote" in cli(gw, "audit", "--target", "user:barbara@example.com")
    page.context.close()


def test_settings_in_the_database_override_the_config(
    browser: Any, gw: Gateway, admin: Any, shot: Shots
) -> None:
    admin.goto("/manage/settings")
    assert "(from tokone.toml)" in (admin.text_content("[data-setting=signup]") or "")
    admin.select_option("select[name=signup]", "closed")
    admin.fill("input[name=signup_credit]", "0.1234567")
    admin.click("button:has-text('Save settings')")
    admin.wait_for_selector(".alert.error")
    assert "6 decimal places" in (admin.text_content(".alert.error") or "")
    assert "(from tokone.toml)" in (admin.text_content("[data-setting=signup]") or "")  # none
    admin.select_option("select[name=signup]", "closed")
    admin.fill("input[name=signup_credit]", "2")
    admin.fill("input[name=allowed_email_domains]", "example.org")
    admin.click("button:has-text('Save settings')")
    admin.wait_for_selector(".alert.ok")
    assert "overridden" in (admin.text_content("[data-setting=signup]") or "")
    shot(admin, "settings")
    visitor = new_page(browser, gw)

    def closed() -> bool:
        visitor.goto("/signup")
        return "Sign-up is closed" in (visitor.text_content("main") or "")

    wait_until(closed, what="sign-up closed in the gateway process")
    stored = {s["name"]: s for s in httpx.get(f"{gw.url}/admin/settings", headers=ADMIN_API).json()}
    assert stored["console.signup"]["value"] == "closed"
    assert stored["console.signup"]["updated_by"] == ADMIN_EMAIL
    # back to the config's values; an open sign-up now credits 2 only at example.org
    httpx.put(
        f"{gw.url}/admin/settings/console.signup", headers=ADMIN_API, json={"value": None}
    ).raise_for_status()
    admin.goto("/manage/settings")
    assert "(from tokone.toml)" in (admin.text_content("[data-setting=signup]") or "")
    wait_until(lambda: not closed(), what="sign-up open again")
    visitor.fill("input[name=email]", "eve@example.com")
    visitor.fill("input[name=password]", PASSWORD)
    visitor.fill("input[name=password2]", PASSWORD)
    visitor.click("button[type=submit]:has-text('Create my account')")
    visitor.wait_for_selector(".alert.error")
    assert "example.com" in (visitor.text_content(".alert.error") or "")
    page = sign_up(browser, gw, "eve@example.org")
    page.goto("/")
    assert float(page.text_content("#balance") or "nan") == 2.0
    for field in ("signup_credit", "allowed_email_domains"):
        admin.check(f"input[name={field}__default]")
    admin.click("button:has-text('Save settings')")
    admin.wait_for_selector(".alert.ok")
    assert "overridden" not in (admin.text_content("#settings-form") or "")
    actions = httpx.get(
        f"{gw.url}/admin/audit", headers=ADMIN_API, params={"action": "setting.set"}
    ).json()
    assert {e["actor"] for e in actions} == {ADMIN_EMAIL, "admin-api"}
    page.context.close()
    visitor.context.close()


def test_onboard_a_user_and_rotate_a_leaked_key(
    browser: Any, gw: Gateway, admin: Any, shot: Shots
) -> None:
    admin.goto("/manage/accounts")
    admin.fill("#form-user input[name=email]", "Newbie@Example.com")
    admin.select_option("#form-user select[name=group]", "vip")
    admin.click("#form-user button")
    admin.wait_for_selector(".alert.ok")
    assert admin.text_content("#group") == "vip"
    link = re.search(r"(http://\S+/reset\?token=\S+)", admin.text_content(".alert.ok") or "")
    assert link
    user = new_page(browser, gw)
    user.goto(link.group(1))
    user.fill("input[name=password]", "my very own password")
    user.fill("input[name=password2]", "my very own password")
    user.click("main button[type=submit]")
    sign_in(user, "newbie@example.com", "my very own password")
    user.wait_for_url(f"{gw.url}/")
    old = create_key(user, "leaky")
    open_account(admin, "newbie@example.com")
    admin.fill("#form-topup input[name=amount]", "1")
    admin.click("#form-topup button")
    admin.wait_for_selector(".alert.ok")
    admin.once("dialog", lambda d: d.accept())
    admin.click("tr[data-key-id] button:has-text('Rotate')")
    admin.wait_for_selector("#new-key")
    shot(admin, "key-rotated")
    new = admin.input_value("#new-key")
    assert new != old and new.startswith("sk-")

    def old_refused() -> bool:
        try:
            chat(gw, old)
        except openai.AuthenticationError:
            return True
        return False

    wait_until(old_refused, what="the leaked key refused")
    assert chat(gw, new).choices[0].message.content  # the new one works
    actions = httpx.get(
        f"{gw.url}/admin/audit", headers=ADMIN_API, params={"target": "user:newbie@example.com"}
    ).json()
    assert [e["action"] for e in actions] == ["user.reset_link", "user.create"]
    user.context.close()
