"""The console in a real browser: Playwright driving Debian's Chromium against `tokone serve`.

The journey a new user takes (sign up, sign in, make a key, copy it, call the mock model with
the openai SDK, see the call in Usage and on the Dashboard, rotate, redeem a code, sign out),
and the ways it must not break: disabled users, CSRF-less posts, `<script>` in names, an
off-site `?next=`. Every page is screenshotted under the test's tmp dir and copied to
/tmp/console-shots/ for a person to look at.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openai
import pytest
from conftest import MOCK_PROVIDER, Gateway, start_gateway
from console_fixtures import (
    PASSWORD,
    Shots,
    browser,
    chat,
    cli,
    create_key,
    eventually,
    needs_chromium,
    page,
    shot,
    sign_in,
    sign_up,
)

SHOTS = Path("/tmp/console-shots")
CONSOLE_TOML = """
[plugins.console]
signup_credit = "1"
login_attempts_per_minute = 5
"""

pytestmark = needs_chromium
__all__ = ["browser", "page", "shot"]  # fixtures, used by name


@pytest.fixture(scope="module")
def console_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with the mock model, the console and a $1 sign-up credit."""
    gw = start_gateway(tmp_path_factory.mktemp("console"), MOCK_PROVIDER + CONSOLE_TOML)
    yield gw
    gw.stop()


def balance(page: Any) -> float:
    """The balance the current page shows."""
    return float(page.text_content("#balance") or "nan")


def test_journey(page: Any, console_gateway: Gateway, shot: Shots) -> None:
    gw = console_gateway
    page.goto("/")
    assert page.url.endswith("/login")
    shot(page, "login")

    sign_up(page, "Ada@Example.com", shot, name="Ada")
    shot(page, "keys-empty")
    assert "ada@example.com" in (page.text_content(".who") or "").lower() or "Ada" in (
        page.text_content(".who") or ""
    )
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")

    sign_in(page, "ada@example.com", url="/login?next=/keys")
    page.wait_for_url("**/keys")

    key = create_key(page, "laptop")
    assert key.startswith("sk-") and len(key) > 40
    shot(page, "key-shown-once")
    page.click("#copy-key")
    page.wait_for_selector("#copy-key:has-text('Copied')")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.goto("/keys")
    assert key not in page.content()  # shown once: never again
    assert key[:9] in page.content()  # but its visible prefix is listed

    page.goto("/")
    assert balance(page) == 1.0  # the sign-up credit
    reply = chat(gw, key)
    assert reply.choices[0].message.content

    def usage_shows_call() -> bool:
        page.goto("/usage")
        return page.text_content("#total-requests") == "1"

    eventually(usage_shows_call)
    assert "mock-1" in (page.text_content("table.calls") or "")
    assert "laptop" in (page.text_content("table.calls") or "")
    shot(page, "usage")
    page.fill("input[name=since]", "2001-01-01")
    page.fill("input[name=until]", "2001-01-31")
    page.click("button:has-text('Filter')")
    assert "since=2001-01-01" in page.url
    assert page.text_content("#total-requests") == "0"  # nothing in that range
    page.goto("/usage?model=mock-1")
    assert page.text_content("#total-requests") == "1"
    page.goto("/")
    assert "mock-1" in (page.text_content("table.calls") or "")
    assert balance(page) < 1.0
    shot(page, "dashboard")

    page.goto("/keys")
    shot(page, "keys")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Rotate')")
    page.wait_for_selector("#new-key")
    rotated = page.input_value("#new-key")
    assert rotated != key
    shot(page, "key-rotated")

    def old_key_refused() -> bool:
        try:
            chat(gw, key)
        except openai.AuthenticationError:
            return True
        return False

    eventually(old_key_refused)
    assert chat(gw, rotated).choices[0].message.content

    page.goto("/keys")
    page.click("a.key-name:has-text('laptop')")
    shot(page, "key-usage")
    assert "Latest calls with this key" in page.content()

    from sqlalchemy import create_engine
    from tokone.core.domain.codes import create_codes
    from tokone.core.domain.keys import KeyHasher

    engine = create_engine(f"sqlite:///{gw.directory / 'tokone.db'}")
    [code] = create_codes(engine, KeyHasher("test-secret"), 5_000_000, 1, actor="test")
    engine.dispose()
    page.goto("/topup")
    before = balance(page)
    page.fill("input[name=code]", code.lower())
    page.click("button:has-text('Redeem')")
    page.wait_for_selector(".alert.ok")
    assert balance(page) == pytest.approx(before + 5, abs=1e-6)
    assert "redeemed" in (page.text_content("table") or "")
    shot(page, "topup")

    for path, name in (("/prices", "pricing"), ("/models", "models"), ("/settings", "settings")):
        page.goto(path)
        assert page.title().endswith("TokOne")
        assert "Sign out" in (page.text_content("header") or "")
        shot(page, name)
    page.goto("/prices")
    assert "mock-1" in (page.text_content("table") or "")
    page.goto("/models")
    assert f'base_url="{gw.url}/v1"' in (page.text_content("main") or "")

    page.goto("/usage")
    calls = int(page.text_content("#total-requests") or "0")
    assert calls >= 2  # the first key's call, the rotated key's call (and any old-key call
    # the one-second key cache still let through)
    csv_text = page.request.get("/usage.csv").text()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("time,request_id,key_id")
    assert len(lines) == 1 + calls
    assert "<th>Stream</th>" in page.content()
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [row["stream"] for row in rows] == ["False"] * calls  # the SDK calls were not streamed
    assert all(",mock-1," in line for line in lines[1:])

    page.set_viewport_size({"width": 390, "height": 844})  # a phone, in dark mode
    page.emulate_media(color_scheme="dark")
    for path, name in (("/", "dashboard"), ("/keys", "keys"), ("/usage", "usage")):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways page
        shot(page, f"{name}-phone-dark")
    page.set_viewport_size({"width": 1280, "height": 720})
    page.emulate_media(color_scheme="light")

    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")
    page.goto("/keys")
    assert "/login" in page.url


def test_disabled_user_cannot_sign_in_and_loses_sessions(
    page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    sign_up(page, "bob@example.com")
    page.goto("/")
    assert "/login" not in page.url
    assert "bob@example.com: disabled" in cli(
        console_gateway, "users", "disable", "bob@example.com"
    )
    page.goto("/")
    assert page.url.endswith("/login")  # the open session has ended
    sign_in(page, "bob@example.com")
    page.wait_for_selector(".alert.error")
    assert "disabled" in (page.text_content(".alert.error") or "")
    shot(page, "disabled")
    sign_in(page, "bob@example.com", "wrong password!")
    wrong = page.text_content(".alert.error")
    sign_in(page, "nobody@example.com", "wrong password!")
    assert page.text_content(".alert.error") == wrong == "Wrong e-mail or password."
    cli(console_gateway, "users", "enable", "bob@example.com")
    sign_in(page, "bob@example.com")
    page.wait_for_url(re.compile(r".*/$"))


def test_posts_without_csrf_token_are_refused(page: Any, console_gateway: Gateway) -> None:
    sign_up(page, "carol@example.com")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert "tokone_session" in cookies and "tokone_csrf" in cookies
    session = next(c for c in page.context.cookies() if c["name"] == "tokone_session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    with httpx.Client(base_url=console_gateway.url, cookies=cookies) as client:
        for path, data in (
            ("/keys", {"name": "forged"}),
            ("/keys", {"name": "forged", "_csrf_token": "0" * 128}),
            ("/logout", {}),
            ("/topup/redeem", {"code": "tkc-X"}),
            ("/login", {"email": "carol@example.com", "password": PASSWORD}),
        ):
            response = client.post(path, data=data)
            assert response.status_code == 403, (path, response.text)
    page.goto("/keys")
    assert "forged" not in page.content()
    assert "/login" not in page.url  # the forged logout did not sign anyone out


def test_script_in_a_key_name_is_shown_escaped(
    page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    sign_up(page, "mallory@example.com")
    name = "<script>alert('xss')</script>"
    create_key(page, name)
    assert page.text_content(".shown .key-name") == name
    page.goto("/keys")
    assert page.text_content("a.key-name") == name
    assert "&lt;script&gt;" in page.content()
    shot(page, "escaped")
    page.click("a.key-name")
    assert page.text_content("dd.key-name") == name
    assert dialogs == []


@pytest.mark.parametrize(
    "target",
    ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"],
)
def test_next_cannot_redirect_off_site(page: Any, console_gateway: Gateway, target: str) -> None:
    email = f"next{abs(hash(target)) % 10**8}@example.com"
    cli(console_gateway, "users", "create", email, "--password-stdin", input=PASSWORD + "\n")
    sign_in(page, email, url=f"/login?next={quote(target, safe='')}")
    page.wait_for_url(f"{console_gateway.url}/")


def test_numbers_past_the_databases_integers_in_the_usage_query(
    page: Any, console_gateway: Gateway
) -> None:
    """`?page=` or `?key=` larger than SQLite's 64-bit integers once failed inside the driver
    (500): a page number is brought into range, a key filter is refused on the page."""
    sign_up(page, "pager@example.com")
    huge = "9" * 30
    for path in (f"/usage?page={huge}", f"/usage?page=-{huge}"):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
    response = page.goto(f"/usage?key={huge}")
    assert response is not None and response.status == 400
    assert "key must be a key id" in (page.text_content(".alert.error") or "")


def test_login_is_throttled_per_email(console_gateway: Gateway) -> None:
    with httpx.Client(base_url=console_gateway.url) as client:
        statuses = []
        for _ in range(7):
            token = re.search(r'name="_csrf_token" value="([^"]+)"', client.get("/login").text)
            assert token
            response = client.post(
                "/login",
                data={"email": "dave@example.com", "password": "x" * 12, "_csrf_token": token[1]},
            )
            statuses.append(response.status_code)
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]
    assert "Too many sign-in attempts" in response.text


def test_users_cli_reset_password_ends_sessions(page: Any, console_gateway: Gateway) -> None:
    out = cli(
        console_gateway,
        "users",
        "create",
        "erin@example.com",
        "--admin",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    assert "created admin erin@example.com" in out
    sign_in(page, "erin@example.com")
    page.wait_for_url(f"{console_gateway.url}/")
    assert "admin" in (page.text_content(".who") or "")
    cli(
        console_gateway,
        "users",
        "reset-password",
        "erin@example.com",
        "--password-stdin",
        input="a brand new password\n",
    )
    page.goto("/keys")
    assert "/login" in page.url
    sign_in(page, "erin@example.com", "a brand new password")
    page.wait_for_url(f"{console_gateway.url}/")
    assert "erin@example.com" in cli(console_gateway, "users", "list")


def test_console_can_be_disabled(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path, MOCK_PROVIDER + '[plugins]\ndisable = ["console"]\n')
    try:
        assert httpx.get(f"{gw.url}/").status_code == 404
        assert httpx.get(f"{gw.url}/login").status_code == 404
    finally:
        gw.stop()


def test_invite_only_sign_up(browser: Any, tmp_path: Path, shot: Shots) -> None:
    extra = '[plugins.console]\nsignup = "invite"\nallowed_email_domains = ["example.com"]\n'
    gw = start_gateway(tmp_path, MOCK_PROVIDER + extra)
    context = browser.new_context(base_url=gw.url)
    try:
        page = context.new_page()
        [code] = cli(gw, "codes", "create", "--amount", "2").split()[-1:]
        assert code.startswith("tkc-")

        def try_sign_up(email: str, invite: str) -> None:
            page.goto("/signup")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", PASSWORD)
            page.fill("input[name=password2]", PASSWORD)
            page.fill("input[name=invite]", invite)
            page.click("button:has-text('Create my account')")

        try_sign_up("zed@example.com", "tkc-AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
        assert "invitation code" in (page.text_content(".alert.error") or "")
        try_sign_up("zed@elsewhere.org", code)
        assert "not open" in (page.text_content(".alert.error") or "")
        shot(page, "invite-refused")
        try_sign_up("zed@example.com", code)
        page.wait_for_url("**/keys")
        page.goto("/topup")
        assert balance(page) == 2.0  # the invitation code was redeemed into the account
        page.click("button:has-text('Sign out')")
        try_sign_up("yan@example.com", code)  # a code invites once
        assert "invitation code" in (page.text_content(".alert.error") or "")
    finally:
        context.close()
        gw.stop()


class Mailbox:
    """An aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes
        from email.policy import default

        self.messages.append(message_from_bytes(envelope.content, policy=default))
        return "250 OK"

    def link(self, to: str, path: str) -> str:
        """The `path` link of the newest message to `to`."""
        found = eventually(lambda: [m for m in self.messages if m["To"] == to])
        body = found[-1].get_content()
        match = re.search(rf"https?://\S+{path}\?token=\S+", body)
        assert match, body
        return match[0]


def test_email_verification_and_password_reset(browser: Any, tmp_path: Path, shot: Shots) -> None:
    from aiosmtpd.controller import Controller
    from conftest import free_port

    mailbox = Mailbox()
    port = free_port()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=port)
    smtp.start()
    extra = (
        f'[plugins.console]\nsignup_credit = "1"\n[plugins.console.smtp]\nhost = "127.0.0.1"\n'
        f"port = {port}\nverify_email = true\npassword_reset = true\n"
    )
    gw = start_gateway(tmp_path, MOCK_PROVIDER + extra)
    context = browser.new_context(base_url=gw.url)
    try:
        page = context.new_page()
        page.goto("/signup")
        page.fill("input[name=email]", "vera@example.com")
        page.fill("input[name=password]", PASSWORD)
        page.fill("input[name=password2]", PASSWORD)
        page.click("button:has-text('Create my account')")
        assert "We sent a link to vera@example.com" in (page.text_content(".alert.ok") or "")
        shot(page, "check-inbox")
        sign_in(page, "vera@example.com")
        assert "Confirm your e-mail first" in (page.text_content(".alert.error") or "")

        page.goto(mailbox.link("vera@example.com", "/verify"))
        page.wait_for_url("**/keys")
        page.goto("/topup")
        assert balance(page) == 1.0  # the sign-up credit came with the confirmation
        page.goto(mailbox.link("vera@example.com", "/verify"))  # a second click: no more credit
        page.goto("/topup")
        assert balance(page) == 1.0

        other = browser.new_context(base_url=gw.url).new_page()
        other.goto("/login")
        other.click("a:has-text('Forgot your password?')")
        other.fill("input[name=email]", "vera@example.com")
        other.click("button:has-text('Send me a link')")
        assert "If that address has an account" in (other.text_content(".alert.ok") or "")
        other.fill("input[name=email]", "nobody@example.com")  # same answer, no mail
        other.click("button:has-text('Send me a link')")
        assert "If that address has an account" in (other.text_content(".alert.ok") or "")
        assert all(m["To"] != "nobody@example.com" for m in mailbox.messages)
        reset_link = mailbox.link("vera@example.com", "/reset")
        other.goto(reset_link)
        other.fill("input[name=password]", "a fresh long password")
        other.fill("input[name=password2]", "a fresh long password")
        shot(other, "reset")
        other.click("button:has-text('Set password')")
        assert "Password changed" in (other.text_content(".alert.ok") or "")
        other.goto(reset_link)  # used once
        assert "invalid or has expired" in (other.text_content(".alert.error") or "")
        page.goto("/keys")
        assert "/login" in page.url  # the reset ended the other session
        sign_in(page, "vera@example.com", "a fresh long password")
        page.wait_for_url(f"{gw.url}/")
        other.context.close()
    finally:
        context.close()
        gw.stop()
        smtp.stop()


def test_sessions_survive_a_restart(page: Any, console_gateway: Gateway) -> None:
    sign_up(page, "rita@example.com")
    console_gateway.stop()
    console_gateway.start()
    page.goto("/keys")
    assert page.url.endswith("/keys")  # still signed in: sessions live in the database
    assert "rita@example.com" in (page.text_content(".who") or "")


def test_disable_enable_revoke_a_key(page: Any, console_gateway: Gateway, shot: Shots) -> None:
    gw = console_gateway
    sign_up(page, "kim@example.com")
    key = create_key(page, "ci")
    assert chat(gw, key).choices[0].message.content
    page.goto("/keys")
    page.click("button:has-text('Disable')")
    assert page.text_content("span.status") == "disabled"

    def refused() -> bool:
        try:
            chat(gw, key)
        except openai.PermissionDeniedError:
            return True
        return False

    eventually(refused)
    page.click("button:has-text('Enable')")
    assert page.text_content("span.status") == "enabled"

    def works() -> bool:
        try:
            return bool(chat(gw, key).choices[0].message.content)
        except openai.PermissionDeniedError:  # the one-second key cache
            return False

    eventually(works)
    page.once("dialog", lambda dialog: dialog.dismiss())  # "No" leaves the key alone
    page.click("button:has-text('Revoke')")
    assert page.text_content("span.status") == "enabled"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Revoke')")
    page.wait_for_selector("span.status:has-text('revoked')")
    assert page.query_selector("button:has-text('Enable')") is None  # cannot come back
    shot(page, "revoked")
    eventually(refused)


def test_key_with_models_and_expiry_and_bad_model_names(page: Any, shot: Shots) -> None:
    sign_up(page, "lou@example.com")
    page.goto("/keys")
    page.fill("input[name=name]", "limited")
    page.fill("input[name=models]", "mock-1, gpt-4o-mini")
    page.fill("input[name=expires_days]", "30")
    page.click("button:has-text('Create key')")
    page.wait_for_selector("#new-key")
    page.goto("/keys")
    row = page.text_content("tr[data-key-id]") or ""
    assert "mock-1, gpt-4o-mini" in row and "never" not in row.split("limited")[1][:40]
    page.fill("input[name=name]", "bad")
    page.fill("input[name=models]", "<script>alert(1)</script>")
    page.click("button:has-text('Create key')")
    error = page.text_content(".alert.error") or ""
    assert "<script>alert(1)</script>" in error  # shown as text, not run
    assert "&lt;script&gt;" in page.content()
    shot(page, "bad-model")


def test_settings_profile_and_password_change(
    browser: Any, page: Any, console_gateway: Gateway, shot: Shots
) -> None:
    sign_up(page, "max@example.com")
    other = browser.new_context(base_url=console_gateway.url).new_page()
    sign_in(other, "max@example.com")
    other.wait_for_url(f"{console_gateway.url}/")
    page.goto("/settings")
    page.fill("form[action='/settings/profile'] input[name=display_name]", "Max <b>M</b>")
    page.click("button:has-text('Save')")
    assert page.text_content(".who .user") == "Max <b>M</b>"
    page.fill("input[name=current]", "not my password")
    page.fill("form[action='/settings/password'] input[name=password]", "an even longer one")
    page.fill("input[name=password2]", "an even longer one")
    page.click("button:has-text('Change password')")
    assert "current password is wrong" in (page.text_content(".alert.error") or "")
    page.fill("input[name=current]", PASSWORD)
    page.fill("form[action='/settings/password'] input[name=password]", "an even longer one")
    page.fill("input[name=password2]", "an even longer one")
    page.click("button:has-text('Change password')")
    assert "other sessions have been signed out" in (page.text_content(".alert.ok") or "")
    shot(page, "password-changed")
    page.goto("/keys")
    assert page.url.endswith("/keys")  # this browser stays signed in
    other.goto("/keys")
    assert "/login" in other.url  # the other one is signed out
    sign_in(other, "max@example.com", "an even longer one")
    other.wait_for_url(f"{console_gateway.url}/")
    other.context.close()


def test_usage_pages(page: Any, console_gateway: Gateway) -> None:
    from sqlalchemy import create_engine
    from sqlmodel import Session, select
    from tokone.core.store.tables import UsageRecord, User

    sign_up(page, "pat@example.com")
    engine = create_engine(f"sqlite:///{console_gateway.directory / 'tokone.db'}")
    with Session(engine) as session:
        user = session.exec(select(User).where(User.email == "pat@example.com")).one()
        for i in range(120):
            session.add(
                UsageRecord(
                    request_id=f"pat-{i:03d}",
                    account_id=user.account_id,
                    model="mock-1",
                    cost=10,
                    created_at=time.time() - 3600 + i,
                )
            )
        session.commit()
    engine.dispose()
    page.goto("/usage")
    assert page.text_content("#total-requests") == "120"
    assert "Page 1 of 3" in (page.text_content(".pager") or "")
    assert "pat-119" in page.content() and "pat-069" not in page.content()
    page.click("a:has-text('Older')")
    assert "Page 2 of 3" in (page.text_content(".pager") or "")
    assert "pat-069" in page.content() and "pat-119" not in page.content()
    csv_lines = page.request.get("/usage.csv").text().strip().splitlines()
    assert len(csv_lines) == 121 and "pat-119" in csv_lines[1] and "pat-000" in csv_lines[-1]
