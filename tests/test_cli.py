"""The CLI as operators use it, including the README's first-run steps word for word."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
import tokone.core.cli.main as cli_main
from conftest import free_port, wait_until
from sqlalchemy import text
from tokone.core.store.db import (
    SchemaStatus,
    alembic_config,
    known_revisions,
    make_engine,
    schema_status,
    upgrade,
)
from typer.testing import CliRunner

from alembic import command as alembic_command

ROOT = Path(__file__).resolve().parent.parent
TOKONE = str(Path(sys.executable).with_name("tokone"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TOKONE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_first_run_with_the_shipped_config(tmp_path):
    """`tokone serve`, then accounts create/topup and keys create give a working key."""
    shutil.copy(ROOT / "tokone.toml", tmp_path / "tokone.toml")
    port = free_port()
    server = subprocess.Popen(
        [TOKONE, "serve", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert run("accounts", "create", "demo", cwd=tmp_path).returncode == 0
        assert run("accounts", "topup", "demo", "10", cwd=tmp_path).returncode == 0
        created = run("keys", "create", "--account", "demo", cwd=tmp_path)
        key = created.stdout.strip().splitlines()[-1]
        assert key.startswith("sk-") and created.stdout.strip() == key

        sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        reply = sdk.chat.completions.create(
            model="mock-1", messages=[{"role": "user", "content": "hello"}]
        )
        assert reply.choices[0].message.content
        text = "".join(
            c.choices[0].delta.content or ""
            for c in sdk.chat.completions.create(
                model="mock-1", messages=[{"role": "user", "content": "hello"}], stream=True
            )
        )
        assert text == reply.choices[0].message.content
        config = ["--config", str(tmp_path / "tokone.toml")]

        def requests_recorded() -> int:  # in-process: a new interpreter per poll costs a second
            done = CliRunner().invoke(cli_main.app, [*config, "accounts", "show", "demo", "--json"])
            return int(json.loads(done.stdout)["usage"]["requests"])

        wait_until(lambda: requests_recorded() == 2, what="both calls recorded")
        shown = json.loads(run("accounts", "show", "demo", "--json", cwd=tmp_path).stdout)
        assert shown["usage"]["requests"] == 2
        assert shown["balance_micro"] < 10_000_000
        human = run("accounts", "show", "demo", cwd=tmp_path).stdout
        assert "balance" in human and "2 requests" in human
    finally:
        server.terminate()
        server.wait(timeout=15)


@pytest.fixture
def cli(make_gateway):
    return make_gateway(start=False).cli


def test_keys_are_shown_once_and_listed_by_prefix_only(cli):
    cli("accounts", "create", "acme")
    key = cli("keys", "create", "--account", "acme", "--name", "ci").strip().splitlines()[-1]
    listing = cli("keys", "list")
    assert key not in listing and key[:9] in listing and "acme" in listing and "ci" in listing
    shown = json.loads(cli("accounts", "show", "acme", "--json"))
    assert shown["keys"][0]["prefix"].startswith(key[:9])
    assert key not in json.dumps(shown)


def test_topup_amounts_are_exact_and_bad_ones_refused(cli):
    cli("accounts", "create", "acme")
    cli("accounts", "topup", "acme", "0.000001")
    cli("accounts", "topup", "acme", "2.5")
    assert json.loads(cli("accounts", "show", "acme", "--json"))["balance_micro"] == 2_500_001
    for bad in ("abc", "0.0000001", "-5", "0", "nan"):
        with pytest.raises(AssertionError, match="error:"):
            cli("accounts", "topup", "acme", "--", bad)
    assert json.loads(cli("accounts", "show", "acme", "--json"))["balance_micro"] == 2_500_001
    assert "OK" in cli("accounts", "check", "acme")


def test_unknown_things_give_clear_errors(cli):
    with pytest.raises(AssertionError, match="no account named 'ghost'"):
        cli("accounts", "topup", "ghost", "1")
    with pytest.raises(AssertionError, match="no account named 'ghost'"):
        cli("keys", "create", "--account", "ghost")
    with pytest.raises(AssertionError, match="no key with id 999"):
        cli("keys", "disable", "999")
    with pytest.raises(AssertionError, match="unknown group 'gold'"):
        cli("accounts", "create", "x", "--group", "gold")
    cli("accounts", "create", "x", "--group", "vip")
    with pytest.raises(AssertionError, match="already exists"):
        cli("accounts", "create", "x")


def test_revoked_key_cannot_be_enabled_or_rotated(cli):
    cli("accounts", "create", "acme")
    cli("keys", "create", "--account", "acme")
    cli("keys", "revoke", "1")
    with pytest.raises(AssertionError, match="revoked"):
        cli("keys", "enable", "1")
    with pytest.raises(AssertionError, match="revoked"):
        cli("keys", "rotate", "1")


def test_help_reads_well(cli):
    from tokone.core.cli.main import app
    from typer.testing import CliRunner

    out = CliRunner().invoke(app, ["--help"]).stdout
    for command in ("serve", "db", "accounts", "keys", "plugins", "config"):
        assert command in out
    keys_help = CliRunner().invoke(app, ["keys", "create", "--help"]).stdout
    assert "--expires-in" in keys_help and "--models" in keys_help


def test_an_unmigrated_postgres_database_gives_a_one_line_hint(tmp_path, postgres_url):
    (tmp_path / "tokone.toml").write_text(f'[database]\nurl = "{postgres_url}"\n')
    result = run("accounts", "list", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    _known, head = known_revisions()
    assert f"is empty, this TokOne needs revision {head}" in result.stderr
    assert "run `tokone db upgrade`" in result.stderr
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    assert run("accounts", "list", cwd=tmp_path).returncode == 0


def test_the_revision_check_agrees_with_alembic():
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    known, head = known_revisions()
    assert script.get_heads() == [head]
    assert known == {rev.revision for rev in script.walk_revisions()}


def test_commands_run_alembic_only_when_the_database_needs_it(tmp_path, monkeypatch):
    """A new or older SQLite database is migrated (and says so); a current one is only
    checked; one at an unknown revision is refused."""
    url = f"sqlite:///{tmp_path / 'tokone.db'}"
    (tmp_path / "tokone.toml").write_text(f'[database]\nurl = "{url}"\n')
    upgrades: list[str] = []
    monkeypatch.setattr(cli_main, "upgrade", lambda u: (upgrades.append(u), upgrade(u)))

    def tokone(*args: str):
        return CliRunner().invoke(cli_main.app, ["--config", str(tmp_path / "tokone.toml"), *args])

    _known, head = known_revisions()
    created = tokone("accounts", "create", "acme")
    assert created.exit_code == 0 and upgrades == [url]
    assert f"created (now at revision {head})" in created.stderr
    assert "created account acme" in created.stdout
    for args in (("accounts", "list"), ("keys", "create", "--account", "acme")):
        done = tokone(*args)
        assert done.exit_code == 0 and done.stderr.count("database") == 0, done.stderr
    assert len(upgrades) == 1  # a current database is not migrated again

    alembic_command.downgrade(alembic_config(url), "-1")
    engine = make_engine(url)
    assert schema_status(engine)[0] is SchemaStatus.BEHIND
    upgraded = tokone("accounts", "list")
    assert upgraded.exit_code == 0 and len(upgrades) == 2 and "acme" in upgraded.stdout
    assert "upgraded from revision" in upgraded.stderr
    assert schema_status(engine) == (SchemaStatus.CURRENT, head)

    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    refused = tokone("accounts", "list")
    engine.dispose()
    assert refused.exit_code == 1 and len(upgrades) == 2
    assert "at revision 9999, which this TokOne does not know" in refused.stderr
