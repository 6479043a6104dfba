"""The console's pieces on their own: password hashing, users, sessions, redirects, settings."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from conftest import migrated_sqlite
from sqlalchemy import Engine
from sqlmodel import Session, select
from tokone.core.domain import sessions, users
from tokone.core.domain.errors import AccountError
from tokone.core.store.db import make_engine, upgrade
from tokone.core.store.tables import ConsoleSession, LedgerEntry, User
from tokone.plugins.console.charts import bar_chart
from tokone.plugins.console.pages import (
    MAX_PAGE,
    _cell,
    key_id_filter,
    money,
    page_number,
    safe_next,
)
from tokone.plugins.console.settings import ConsoleConfig

POLICY = users.PasswordPolicy(min_length=10)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = migrated_sqlite(tmp_path / "c.db")
    return make_engine(url)


def test_password_hash_is_argon2_salted_and_verifies() -> None:
    first, second = users.hash_password("a long password"), users.hash_password("a long password")
    assert first.startswith("$argon2id$") and first != second
    assert users.verify_password(first, "a long password")
    assert not users.verify_password(first, "a long passworD")
    assert not users.verify_password("not a hash", "a long password")


def test_password_policy() -> None:
    with pytest.raises(AccountError, match="at least 10"):
        users.check_password("short", POLICY)
    with pytest.raises(AccountError, match="at most"):
        users.check_password("x" * 2000, POLICY)
    users.check_password("x" * 10, POLICY)


def test_emails_are_case_insensitive_and_checked(engine: Engine) -> None:
    user = users.create_user(engine, " Ada@Example.COM ", "a long password", policy=POLICY)
    assert user.email == "ada@example.com"
    with pytest.raises(AccountError, match="already exists") as caught:
        users.create_user(engine, "ADA@example.com", "a long password", policy=POLICY)
    assert caught.value.status == 409
    for bad in ("no-at-sign", "a@b", "a b@example.com"):
        with pytest.raises(AccountError, match="not an e-mail"):
            users.check_email(bad)
    with pytest.raises(AccountError, match="not open"):
        users.check_email("x@other.org", ["example.com"])
    assert users.check_email("x@Example.com", ["example.com"]) == "x@example.com"


def test_sign_up_credit_is_a_topup_entry(engine: Engine) -> None:
    user = users.create_user(engine, "b@example.com", "a long password", policy=POLICY, credit=5)
    with Session(engine) as session:
        entry = session.exec(
            select(LedgerEntry).where(LedgerEntry.account_id == user.account_id)
        ).one()
    assert (entry.kind, entry.amount, entry.note) == ("topup", 5, "sign-up credit")


def test_authenticate(engine: Engine) -> None:
    users.create_user(engine, "c@example.com", "a long password", policy=POLICY)
    assert users.authenticate(engine, "C@example.com", "a long password") is not None
    assert users.authenticate(engine, "c@example.com", "wrong password") is None
    assert users.authenticate(engine, "nobody@example.com", "a long password") is None
    assert users.authenticate(engine, "c@example.com", "x" * 5000) is None
    users.set_status(engine, "c@example.com", "disabled")
    found = users.authenticate(engine, "c@example.com", "a long password")
    assert found is not None and found.status == "disabled"


def test_sessions_end_on_logout_disable_and_password_change(engine: Engine) -> None:
    user = users.create_user(engine, "d@example.com", "a long password", policy=POLICY)
    assert user.id is not None
    one = sessions.create_session(engine, user.id, 3600)
    two = sessions.create_session(engine, user.id, 3600)
    with Session(engine) as session:
        stored = {row.token_hash for row in session.exec(select(ConsoleSession)).all()}
    assert one not in stored and sessions.token_hash(one) in stored  # only hashes stored
    assert sessions.resolve(engine, one).email == "d@example.com"  # type: ignore[union-attr]
    sessions.end_session(engine, one)
    assert sessions.resolve(engine, one) is None
    assert sessions.resolve(engine, two) is not None

    three = sessions.create_session(engine, user.id, 3600)
    users.set_password(
        engine, user.id, "another long one", POLICY, keep_session=sessions.token_hash(three)
    )
    assert sessions.resolve(engine, two) is None
    assert sessions.resolve(engine, three) is not None  # the browser that changed it
    assert users.authenticate(engine, "d@example.com", "another long one") is not None

    users.set_status(engine, "d@example.com", "disabled")
    assert sessions.resolve(engine, three) is None
    assert sessions.count_sessions(engine, user.id) == 0


def test_expired_sessions_are_refused_and_cleaned(engine: Engine) -> None:
    user = users.create_user(engine, "e@example.com", "a long password", policy=POLICY)
    assert user.id is not None
    old = sessions.create_session(engine, user.id, -1)
    assert sessions.resolve(engine, old) is None
    sessions.create_session(engine, user.id, 3600)
    assert sessions.count_sessions(engine, user.id) == 1
    with Session(engine) as session:
        assert len(session.exec(select(ConsoleSession)).all()) == 1
    assert sessions.resolve(engine, "") is None
    assert sessions.resolve(engine, "x" * 500) is None


def test_user_for_existing_account(engine: Engine) -> None:
    from tokone.core.domain.accounts import create_account

    account = create_account(engine, "legacy")
    user = users.create_user(
        engine, "f@example.com", "a long password", policy=POLICY, account="legacy", role="admin"
    )
    assert (user.account_id, user.role) == (account.id, "admin")
    with pytest.raises(AccountError, match="no account"):
        users.create_user(engine, "g@example.com", "a long password", policy=POLICY, account="x")
    with Session(engine) as session:
        assert session.exec(select(User).where(User.email == "g@example.com")).first() is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/keys", "/keys"),
        ("/usage?key=1&model=m", "/usage?key=1&model=m"),
        ("", "/"),
        (None, "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/\tevil", "/"),
        ("keys", "/"),
    ],
)
def test_safe_next(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


def test_settings_validation() -> None:
    assert ConsoleConfig(signup_credit="1.5").credit_micro == 1_500_000
    for bad in (
        {"signup": "maybe"},
        {"signup_credit": "-1"},
        {"signup_credit": "lots"},
        {"min_password_length": 4},
        {"session_days": 0},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, ConsoleConfig)


def test_chart_escapes_and_scales() -> None:
    svg = str(bar_chart([("<d>", 1), ("b", 3)], title="t<", fmt=lambda v: f"{v}&"))
    assert "<d>" not in svg and "&lt;d&gt;" in svg and "t&lt;" in svg
    assert svg.count('class="bar"') == 2
    assert "max 3&amp;" in svg


def test_money_and_csv_cells() -> None:
    assert money(1_000_000) == "1.00"
    assert money(29) == "0.000029"
    assert money(-2_500_000) == "-2.50"
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("laptop") == "laptop"
    assert _cell(5) == 5


def test_last_seen_is_touched_at_most_once_a_minute(engine: Engine) -> None:
    user = users.create_user(engine, "h@example.com", "a long password", policy=POLICY)
    assert user.id is not None
    token = sessions.create_session(engine, user.id, 3600)
    with Session(engine) as session:
        row = session.get(ConsoleSession, sessions.token_hash(token))
        assert row is not None
        row.last_seen_at = time.time() - 120
        session.add(row)
        session.commit()
    sessions.resolve(engine, token)
    with Session(engine) as session:
        row = session.get(ConsoleSession, sessions.token_hash(token))
        assert row is not None and time.time() - row.last_seen_at < 5


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_daily_series_and_calls_on_both_databases(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tokone.core.domain.accounts import create_account
    from tokone.core.store.tables import UsageRecord
    from tokone.plugins.console import queries

    url = (
        request.getfixturevalue("postgres_url")
        if backend == "postgres"
        else f"sqlite:///{tmp_path / 'q.db'}"
    )
    upgrade(url)
    engine = make_engine(url)
    try:
        account = create_account(engine, "q")
        assert account.id is not None
        now = time.time()
        today = now - now % queries.DAY
        with Session(engine) as session:
            for i, (at, cost) in enumerate(
                [(today + 10, 5), (today + 20, 7), (today - queries.DAY + 5, 11)]
            ):
                session.add(
                    UsageRecord(
                        request_id=f"r{i}",
                        account_id=account.id,
                        model="m",
                        cost=cost,
                        created_at=at,
                    )
                )
            session.commit()
        series = queries.daily(engine, queries.CallFilter(account.id), 30)
        assert len(series) == 31 and series[-1][1:] == (2, 12) and series[-2][1:] == (1, 11)
        assert sum(n for _, n, _ in series) == 3
        calls = queries.calls(engine, queries.CallFilter(account.id, model="m"), 2)
        assert [c["request_id"] for c in calls] == ["r2", "r1"]
        assert [
            c["request_id"]
            for c in queries.iter_calls(engine, queries.CallFilter(account.id), batch=2)
        ] == ["r2", "r1", "r0"]
    finally:
        engine.dispose()


def test_payment_plugins_add_topup_methods(tmp_path: Path) -> None:
    from tokone.core.config import parse_config
    from tokone.core.gateway import Gateway
    from tokone.core.hookspecs import hookimpl
    from tokone.plugins.console.hookspecs import TopupMethod
    from tokone.plugins.console.pages import Console

    url = migrated_sqlite(tmp_path / "t.db")
    gateway = Gateway(parse_config({"database": {"url": url}}))
    console = Console(gateway)
    Console(gateway)  # a second console on the same gateway adds the hook only once

    class CardPayments:
        @hookimpl
        def console_topup_methods(self, gateway, user, account):  # type: ignore[no-untyped-def]
            return [TopupMethod("Card", f"for {account.name}", "/pay/card")]

    gateway.pm.register(CardPayments(), name="card")
    user = users.create_user(gateway.engine, "p@example.com", "a long password", policy=POLICY)
    methods = console.topup_data(user)["methods"]
    assert methods == [TopupMethod("Card", "for p@example.com", "/pay/card")]
    gateway.engine.dispose()


def test_usage_filters_keep_numbers_the_database_can_take():
    """`?key=` and `?page=` as typed in a URL: no value reaches SQL past its integers."""
    assert key_id_filter("") is None and key_id_filter(" 42 ") == 42
    for bad in ("abc", "-1", "1.5", "²", "9" * 30, str(2**53 + 1)):
        with pytest.raises(AccountError, match="key must be a key id"):
            key_id_filter(bad)
    assert [page_number(p) for p in (-(10**30), 0, 1, 7, 10**30)] == [1, 1, 1, 7, MAX_PAGE]
