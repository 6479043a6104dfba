"""The admin console's operations on their own: search and paging, money, settings, audit, codes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import migrated_sqlite
from tokone.core.config import load_config
from tokone.core.domain import audit, codes, settings_store, users
from tokone.core.domain.accounts import create_account
from tokone.core.domain.errors import AccountError
from tokone.core.gateway import Gateway
from tokone.plugins.console import admin_ops
from tokone.plugins.console.settings import ConsoleConfig

POLICY = users.PasswordPolicy(min_length=10)


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    """A gateway object (not serving) on a fresh SQLite database."""
    url = migrated_sqlite(tmp_path / "a.db")
    config = tmp_path / "tokone.toml"
    config.write_text(
        f'[server]\nsecret = "s"\n[database]\nurl = "{url}"\n'
        "[groups.default]\nmultiplier = 1.0\n"
        '[[providers]]\nname = "mock"\nadapter = "mock"\nmodels = ["mock-1"]\n'
    )
    return Gateway(load_config(str(config)))


@pytest.fixture
def actor(gateway: Gateway) -> admin_ops.Actor:
    """An admin acting from 10.0.0.1."""
    user = users.create_user(
        gateway.engine, "root@example.com", "a long password", policy=POLICY, role="admin"
    )
    return admin_ops.Actor(user, "10.0.0.1")


def test_search_matches_names_and_emails_and_pages(gateway: Gateway, actor: Any) -> None:
    for i in range(120):
        create_account(gateway.engine, f"team-{i:03d}")
    users.create_user(
        gateway.engine, "Zed@Corp.example", "a long password", policy=POLICY, account="team-007"
    )
    everyone = admin_ops.search_accounts(gateway, "", 1)
    assert everyone["total"] == 121 and everyone["pages"] == 3
    assert len(everyone["accounts"]) == 50
    last = admin_ops.search_accounts(gateway, "", 3)
    assert len(last["accounts"]) == 21
    by_email = admin_ops.search_accounts(gateway, "ZED@corp", 1)
    assert [(a.name, emails) for a, emails, _ in by_email["accounts"]] == [
        ("team-007", ["zed@corp.example"])
    ]
    assert admin_ops.search_accounts(gateway, "TEAM-11", 1)["total"] == 10


def test_money_is_parsed_as_the_cli_parses_it(gateway: Gateway, actor: Any) -> None:
    account = create_account(gateway.engine, "acme")
    assert account.id is not None
    for bad, message in (
        ("1e-7", "6 decimal places"),
        ("0.1234567", "6 decimal"),
        ("x", "not an amount"),
    ):
        with pytest.raises(AccountError, match=message):
            admin_ops.money_action(gateway, actor, account.id, "topup", {"amount": bad})
    admin_ops.money_action(gateway, actor, account.id, "topup", {"amount": "0.000001"})
    with pytest.raises(AccountError, match="needs a note"):
        admin_ops.money_action(gateway, actor, account.id, "adjust", {"amount": "-1"})
    entries = audit.list_entries(gateway.engine, audit.AuditFilter(target="account:acme"))
    assert [(e.actor, e.action, e.ip) for e in entries] == [
        ("root@example.com", "account.topup", "10.0.0.1")
    ]
    assert audit.entry_dict(entries[0])["after"]["balance"] == "0.000001"


def test_settings_are_checked_before_any_is_stored(gateway: Gateway, actor: Any) -> None:
    defaults = ConsoleConfig()
    form = {"signup": "closed", "signup_credit": "-1", "allowed_email_domains": ""}
    with pytest.raises(AccountError, match="non-negative"):
        admin_ops.settings_save(gateway, actor, form, defaults)
    assert settings_store.stored_values(gateway.engine) == {}
    form["signup_credit"] = "0"  # the default: not stored
    assert admin_ops.settings_save(gateway, actor, form, defaults) == "Saved: signup."
    assert settings_store.stored_values(gateway.engine) == {"console.signup": "closed"}
    with pytest.raises(AccountError, match="unknown setting"):
        settings_store.set_setting(gateway.engine, "console.secret", "x", "t")
    with pytest.raises(AccountError, match="domain names"):
        settings_store.set_setting(gateway.engine, "console.allowed_email_domains", ["a b"], "t")


def test_codes_expire_and_disable(gateway: Gateway) -> None:
    account = create_account(gateway.engine, "acme")
    assert account.id is not None
    with pytest.raises(AccountError, match="future"):
        codes.create_codes(gateway.engine, gateway.hasher, 1, 1, "t", expires_at=time.time() - 1)
    soon = codes.create_codes(
        gateway.engine, gateway.hasher, 1, 1, "t", expires_at=time.time() + 0.2
    )
    off = codes.create_codes(gateway.engine, gateway.hasher, 1, 2, "t", batch="b")
    info = {c.batch: c for c in codes.list_codes(gateway.engine)}
    assert info["b"].state == "unused"
    time.sleep(0.3)
    with pytest.raises(AccountError, match="expired"):
        codes.redeem(gateway.engine, gateway.hasher, soon[0], account.id)
    first = next(c for c in codes.list_codes(gateway.engine) if c.batch == "b")
    codes.disable_code(gateway.engine, first.id)
    with pytest.raises(AccountError, match="already redeemed or disabled"):
        codes.disable_code(gateway.engine, first.id)
    with pytest.raises(AccountError, match="disabled"):
        codes.redeem(gateway.engine, gateway.hasher, off[0], account.id)
    assert codes.redeem(gateway.engine, gateway.hasher, off[1], account.id)[0] == 1
    states = sorted(c.state for c in codes.list_codes(gateway.engine))
    assert states == ["disabled", "expired", "redeemed"]
