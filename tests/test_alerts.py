"""Alerts by signed webhook and by e-mail: a local HTTP receiver and a local SMTP server
(aiosmtpd) check exactly one delivery per crossing, the signature, retries after the
receiver comes back, and that a dead endpoint never slows calls."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx
import openai
import pytest
from aiosmtpd.controller import Controller
from conftest import free_port, migrated_sqlite, wait_until
from ledger_checks import CHAT, database_url
from sqlalchemy import text
from test_key_limits import MOCK_COST, key_id_of
from tokone.core.store.db import make_engine
from tokone.plugins.alerts.settings import AlertSettings
from tokone.plugins.alerts.worker import AlertWorker

SECRET = "whsec-test"


class Receiver:
    """A local webhook endpoint: records each POST; answers `status` (503 while 'down')."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, kind: str | None = None) -> list[dict]:
        """The JSON bodies received (of one alert type), in order."""
        found = [json.loads(body) for _, body in self.requests]
        return [e for e in found if kind is None or e["type"] == kind]


class Mailbox:
    """A local SMTP server collecting messages."""

    def __init__(self) -> None:
        self.messages: list = []
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                box.messages.append(message_from_bytes(envelope.content))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.server.shutdown()


@pytest.fixture
def mailbox():
    box = Mailbox()
    yield box
    box.controller.stop()


def alerts_toml(
    mailbox_port: int | None = None,
    webhook: str = "",
    timeout: float = 5.0,
    private_webhooks: bool = True,
) -> str:
    """A fast-scanning `[plugins.alerts]` table with quick retries; the local receivers are
    on 127.0.0.1, so accounts' own webhooks may point at private addresses unless told."""
    smtp = (
        f'\n[plugins.alerts.smtp]\nhost = "127.0.0.1"\nport = {mailbox_port}\n'
        'sender = "alerts@tokone.test"\n'
        if mailbox_port
        else ""
    )
    return (
        "\n[plugins.key_auth]\nrefresh_seconds = 0.05\n"
        f'\n[plugins.alerts]\nwebhook_secret = "{SECRET}"\nscan_seconds = 0.1\n'
        "expiry_scan_seconds = 0.2\n"
        f'retry_seconds = [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]\nwebhook_url = "{webhook}"\n'
        f"timeout_seconds = {timeout}\nprivate_webhooks = {str(private_webhooks).lower()}\n" + smtp
    )


def deliveries(gateway) -> list[dict]:
    """Every alert_deliveries row."""
    engine = make_engine(database_url(gateway))
    try:
        return deliveries_of(engine)
    finally:
        engine.dispose()


def check_signature(headers: dict[str, str], body: bytes) -> None:
    """The x-tokone-signature header is HMAC-SHA256(secret, "<t>." + body), t recent."""
    parts = dict(p.split("=", 1) for p in headers["x-tokone-signature"].split(","))
    timestamp = int(parts["t"])
    assert abs(time.time() - timestamp) < 60
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())


def test_an_accounts_own_webhook_to_a_private_address_is_refused(make_gateway, receiver):
    """A user sets their account's webhook in the console: by default it may not point into
    the operator's network (no request is made, the delivery fails at once, recorded);
    the operator's own `webhook_url` on the same address still gets its alerts."""
    gateway = make_gateway(alerts_toml(webhook=receiver.url, private_webhooks=False))
    key = gateway.funded_key("ssrf", "0.001")
    own = receiver.url + "/own"  # same receiver, not the operator's URL
    gateway.cli("alerts", "set", "ssrf", "--threshold", "0.0009", "--webhook", own)
    operator_key = gateway.funded_key("ops", "0.001")
    gateway.cli("alerts", "set", "ops", "--threshold", "0.0009")
    for api_key in (key, operator_key):
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=api_key, max_retries=0)
        for _ in range(6):
            sdk.chat.completions.create(**CHAT)

    def settled() -> list[dict]:
        found = deliveries(gateway)
        return found if len(found) == 2 and all(r["status"] != "pending" for r in found) else []

    rows = wait_until(settled, what="both deliveries settled")
    by_status = {r["status"]: r for r in rows}
    assert set(by_status) == {"failed", "delivered"}
    assert by_status["failed"]["attempts"] == 1
    assert "non-public address 127.0.0.1" in by_status["failed"]["last_error"]
    assert [json.loads(body)["account"] for _, body in receiver.requests] == ["ops"]
    assert httpx.get(gateway.url + "/healthz").status_code == 200


def test_low_balance_alert_once_per_crossing_by_webhook_and_email(make_gateway, receiver, mailbox):
    gateway = make_gateway(alerts_toml(mailbox.port))
    key = gateway.funded_key("low", "0.001")  # 1000 micro-units
    out = gateway.cli(
        "alerts", "set", "low", "--threshold", "0.0009", "--webhook", receiver.url,
        "--email", "owner@example.com",
    )  # fmt: skip
    assert "threshold 0.000900" in out
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    for _ in range(10):  # 1000 -> 750: crosses 900 on the 5th call, once
        sdk.chat.completions.create(**CHAT)
    wait_until(lambda: receiver.events("low_balance") and mailbox.messages)
    time.sleep(1.0)  # several more scans: nothing else may arrive
    assert len(receiver.events("low_balance")) == 1 and len(mailbox.messages) == 1
    headers, body = receiver.requests[0]
    check_signature(headers, body)
    assert headers["x-tokone-event"] == "low_balance"
    event = json.loads(body)
    assert event["account"] == "low" and event["threshold"] == 900
    assert 750 <= event["balance"] < 900  # as the scan after the crossing found it
    mail = mailbox.messages[0]
    assert mail["To"] == "owner@example.com" and "low balance" in mail["Subject"]
    assert "below the alert threshold 0.000900" in mail.get_payload()
    rows = deliveries(gateway)
    assert [(r["channel"], r["status"], r["attempts"]) for r in rows] == [
        ("webhook", "delivered", 1),
        ("email", "delivered", 1),
    ]
    # A tampered body does not verify.
    with pytest.raises(AssertionError):
        check_signature(headers, body.replace(b'"low"', b'"other"'))
    # A top-up re-arms the alert; spending below the threshold again is a second crossing.
    gateway.cli("accounts", "topup", "low", "0.0002")
    time.sleep(0.5)
    for _ in range(10):
        sdk.chat.completions.create(**CHAT)
    wait_until(lambda: len(receiver.events("low_balance")) == 2 and len(mailbox.messages) == 2)
    time.sleep(0.5)
    assert len(receiver.events("low_balance")) == 2
    assert "alerts" not in gateway.log  # no alert failure logged


def test_retry_after_the_receiver_comes_back_and_a_dead_endpoint_never_slows_calls(
    make_gateway, receiver
):
    # A black hole: accepts connections and never answers (the webhook times out).
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(100)
    dead = f"http://127.0.0.1:{hole.getsockname()[1]}/hook"
    gateway = make_gateway(alerts_toml(webhook=dead, timeout=1.0))
    try:
        slow_key = gateway.funded_key("slow", "0.0002")
        gateway.cli("alerts", "set", "slow", "--threshold", "1")  # below at once
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=slow_key, max_retries=0)
        sdk.chat.completions.create(**CHAT)
        wait_until(lambda: any(r["attempts"] >= 1 for r in deliveries(gateway)))
        started = time.perf_counter()
        for _ in range(5):
            sdk.chat.completions.create(**CHAT)
        assert time.perf_counter() - started < 1.0  # the pending webhook is not in the way
    finally:
        hole.close()

    receiver.status = 503  # the endpoint is up but failing
    key = gateway.funded_key("retry", "0.0002")
    gateway.cli("alerts", "set", "retry", "--threshold", "1", "--webhook", receiver.url)
    openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        **CHAT
    )
    wait_until(lambda: len(receiver.requests) >= 2)  # the first attempt and a retry
    receiver.status = 200  # back
    wait_until(
        lambda: any(r["status"] == "delivered" and r["target"] == receiver.url
                    for r in deliveries(gateway))
    )  # fmt: skip
    time.sleep(1.0)
    ids = {headers["x-tokone-delivery"] for headers, _ in receiver.requests}
    assert len(ids) == 1  # the same delivery every time
    ok = [r for r in deliveries(gateway) if r["target"] == receiver.url]
    assert len(ok) == 1 and ok[0]["attempts"] == len(receiver.requests) >= 3
    assert ok[0]["status"] == "delivered"
    listing = gateway.cli("alerts", "list", "--account", "retry")
    assert "delivered" in listing and receiver.url in listing


def test_key_limit_80_and_100_percent_and_expiry_alerts(make_gateway, receiver):
    gateway = make_gateway(alerts_toml(webhook=receiver.url))
    key = gateway.funded_key("lim", "10", "--expires-in", "1")
    key_id = key_id_of(gateway, "lim")
    gateway.cli("limits", "key", str(key_id), "--per-period", f"0.{10 * MOCK_COST:06d}")
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    refused = 0
    for _ in range(40):
        try:
            sdk.chat.completions.create(**CHAT)
        except openai.APIStatusError as exc:
            assert exc.status_code == 402
            refused += 1
    assert refused
    wait_until(lambda: len(receiver.events("key_limit")) == 2)
    wait_until(lambda: receiver.events("key_expiry"))
    time.sleep(1.0)
    limits = receiver.events("key_limit")
    assert sorted(e["percent"] for e in limits) == [80, 100]  # sent concurrently
    assert all(e["key_id"] == key_id and e["limit"] == 10 * MOCK_COST for e in limits)
    assert all(e["spent"] >= 8 * MOCK_COST for e in limits)
    expiry = receiver.events("key_expiry")
    assert len(expiry) == 1 and expiry[0]["key_id"] == key_id
    assert len(receiver.requests) == 3
    assert len({headers["x-tokone-delivery"] for headers, _ in receiver.requests}) == 3
    for headers, body in receiver.requests:
        check_signature(headers, body)


def test_two_gateways_on_postgres_alert_once(make_gateway, postgres_url, receiver):
    gateways = [make_gateway(alerts_toml(webhook=receiver.url), database=postgres_url)]
    gateways.append(make_gateway(alerts_toml(webhook=receiver.url), database=postgres_url))
    key = gateways[0].funded_key("pg", "0.01")  # room for both processes' leases
    gateways[0].cli("alerts", "set", "pg", "--threshold", "0.0098")
    for i in range(12):  # both processes see the account below its threshold
        openai.OpenAI(
            base_url=gateways[i % 2].url + "/v1", api_key=key, max_retries=0
        ).chat.completions.create(**CHAT)
    wait_until(lambda: receiver.events("low_balance"))
    time.sleep(1.0)
    assert len(receiver.events("low_balance")) == 1
    check_signature(*receiver.requests[0])


def test_a_charge_written_after_the_first_scan_still_alerts(tmp_path):
    """The ledger writes charges behind the calls: a scan that reads the balance before the
    last charge landed must not forget the account, or its crossing is never alerted (seen
    on a loaded CI machine). In-process, the worker's scans and a late balance update."""
    url = migrated_sqlite(tmp_path / "alerts.db")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO accounts (name, "group", balance, held, alert_threshold, '
                "alert_webhook, alert_email, created_at) "
                "VALUES ('late', 'default', 10, 0, 5, 'http://127.0.0.1:9/hook', '', 0)"
            )
        )
    gateway = SimpleNamespace(
        engine=engine,
        config=SimpleNamespace(server=SimpleNamespace(secret="s")),
        plugin_config=lambda name: None,
    )

    async def scenario() -> None:
        worker = AlertWorker(gateway, AlertSettings(scan_seconds=3600))
        try:
            worker.saw(1, 1, None)
            await worker.scan()  # the call's charge is not written yet: nothing to say
            assert deliveries_of(engine) == []
            with engine.begin() as conn:  # now the ledger writer lands it
                conn.execute(text("UPDATE accounts SET balance = 4 WHERE id = 1"))
            await worker.scan()
        finally:
            await worker.stop()

    asyncio.run(scenario())
    assert [(r["kind"], r["status"]) for r in deliveries_of(engine)] == [("low_balance", "pending")]
    engine.dispose()


def deliveries_of(engine) -> list[dict]:
    """Every alert_deliveries row of `engine`."""
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM alert_deliveries ORDER BY id")).all()
        return [dict(r._mapping) for r in rows]
