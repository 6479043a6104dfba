"""The database goes away: 503 with retry-after in every family, /readyz 503, recovery.

`tokone serve` refuses to start without its database with one line naming the URL
(password masked). At run time keys already in the key cache keep being served while the
ledger's lease covers them, and their settlements are written once the database is back.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import psycopg
from conftest import POSTGRES_ADMIN_URL, migrated_sqlite
from sqlalchemy import text
from tokone.core.store.db import make_engine

BODIES = {
    "openai": (
        "/v1/chat/completions",
        {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}]},
    ),
    "anthropic": (
        "/v1/messages",
        {"model": "mock-1", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]},
    ),
    "gemini": (
        "/v1beta/models/mock-1:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
    ),
}


def call(url: str, family: str, key: str) -> httpx.Response:
    """One small inference call in `family`'s wire format."""
    path, body = BODIES[family]
    headers = {
        "openai": {"authorization": f"Bearer {key}"},
        "anthropic": {"x-api-key": key, "anthropic-version": "2023-06-01"},
        "gemini": {"x-goog-api-key": key},
    }[family]
    return httpx.post(url + path, json=body, headers=headers, timeout=30)


def assert_unavailable(response: httpx.Response, family: str) -> None:
    """A 503 with retry-after in the family's error shape."""
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    body = response.json()
    if family == "openai":
        assert set(body["error"]) == {"message", "type", "param", "code"}
    elif family == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "overloaded_error"
    else:
        assert body["error"]["code"] == 503 and body["error"]["status"] == "UNAVAILABLE"


def set_connections(database_url: str, allowed: bool) -> None:
    """Let clients connect to the database again, or cut everyone off (and keep them out)."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )


def test_serve_without_database_exits_with_one_line(tmp_path):
    url = "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test"
    result = subprocess.run(
        [sys.executable, "-m", "tokone.core.cli.main", "serve", "--port", "1"],
        env={**os.environ, "TOKONE_DATABASE_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: cannot reach the database at ")
    assert "postgres:***@127.0.0.1:1/test" in lines[0] and "s3cret" not in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_database_down_answers_503_then_recovers(make_gateway, postgres_url):
    gateway = make_gateway(database=postgres_url)
    warm = gateway.funded_key("warm", "10")
    cold = gateway.funded_key("cold", "10")
    assert call(gateway.url, "openai", warm).status_code == 200  # warms the key cache
    served: list[str] = []
    set_connections(postgres_url, False)
    try:
        # A cached key may still be served from the lease: every 200 must be charged later.
        for family in BODIES:
            response = call(gateway.url, family, warm)
            assert response.status_code in (200, 503), (response.status_code, response.text)
            if response.status_code == 200:
                served.append(response.headers["x-request-id"])
            else:
                assert_unavailable(response, family)
        for family in BODIES:  # a key the process never saw needs the database
            assert_unavailable(call(gateway.url, family, cold), family)
        ready = httpx.get(gateway.url + "/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert httpx.get(gateway.url + "/healthz", timeout=5).status_code == 200
    finally:
        set_connections(postgres_url, True)

    deadline = time.monotonic() + 20
    while httpx.get(gateway.url + "/readyz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "readyz never recovered"
        time.sleep(0.2)
    for family in BODIES:
        assert call(gateway.url, family, cold).status_code == 200
        assert call(gateway.url, family, warm).status_code == 200

    engine = make_engine(postgres_url)
    try:
        deadline = time.monotonic() + 20
        while True:  # what was served during the outage is charged once the database is back
            with engine.connect() as conn:
                charged = {
                    row[0]
                    for row in conn.execute(
                        text("SELECT request_id FROM ledger_entries WHERE kind = 'capture'")
                    )
                }
            if set(served) <= charged or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert set(served) <= charged
        assert "OK" in gateway.cli("accounts", "check", "warm")
    finally:
        engine.dispose()
    assert "Traceback" not in gateway.log


def test_settlements_are_kept_while_the_database_is_away(tmp_path, monkeypatch):
    from tokone.plugins.ledger import writer as ledger_writer
    from tokone.plugins.ledger.jobs import Report, SettleJob

    monkeypatch.setattr(ledger_writer, "RETRY_DELAYS", ())
    url = migrated_sqlite(tmp_path / "ledger.db")
    good = make_engine(url)
    with good.begin() as conn:
        conn.execute(
            text(
                'INSERT INTO accounts (name, "group", balance, held, created_at) '
                "VALUES ('a', 'default', 1000, 0, 0)"
            )
        )
    broken = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    reports: list[Report] = []
    writer = ledger_writer.LedgerWriter(broken, 600, reports.extend)
    row = dict(
        request_id="req-1", account_id=1, key_id=1, endpoint="chat", stream=False, model="m",
        provider="p", upstream_model="m", input_tokens=1, cached_input_tokens=0, output_tokens=1,
        estimated=False, cost=7, multiplier=1.0, tier="default", status=200, latency_ms=1.0,
    )  # fmt: skip
    writer._write([SettleJob(1, row)])
    assert [job.row["request_id"] for job in writer._deferred] == ["req-1"]
    assert all(report.settled == 0 for report in reports)  # still counted as unsettled

    writer.engine = good  # the database is back: the kept settlement is written once
    jobs, writer._deferred = list(writer._deferred), []
    writer._write(jobs)
    assert writer._deferred == []
    with good.connect() as conn:
        captures = conn.execute(
            text("SELECT request_id, amount FROM ledger_entries WHERE kind = 'capture'")
        ).all()
        balance = conn.execute(text("SELECT balance FROM accounts WHERE id = 1")).scalar()
    assert [tuple(c) for c in captures] == [("req-1", -7)] and balance == 993
    good.dispose()
    broken.dispose()
