"""Shared fixtures: real gateway processes on free ports, the fake upstream, fresh databases.

Tests drive TokOne the way users do: `tokone serve` as a subprocess, the official SDKs (or
httpx) as clients, the CLI for accounts and keys.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from fake_upstream import FakeUpstream
from sqlalchemy import text
from tokone.core.cli.main import app as cli_app
from tokone.core.config import load_config
from tokone.core.store.db import make_engine

POSTGRES_ADMIN_URL = os.environ.get(
    "TOKONE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOKONE_TEST_REDIS", "redis://127.0.0.1:6379/0")

BASE_TOML = """
[server]
host = "127.0.0.1"
port = {port}
secret = "test-secret"
admin_keys = ["admin-test-key"]

[database]
url = "{database}"

[billing]
default_max_output_tokens = 1000

[groups.default]
multiplier = 1.0

[groups.vip]
multiplier = 0.5

[prices."mock-1"]
input = 1.0
output = 2.0

[prices."gpt-4o-mini"]
input = 0.15
output = 0.60
cached_input = 0.075
"""

MOCK_PROVIDER = """
[[providers]]
name = "mock"
adapter = "mock"
models = ["mock-1"]
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gateway:
    """A `tokone serve` subprocess with its own config file and database."""

    def __init__(self, directory: Path, config_text: str, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = directory / "tokone.toml"
        self.config_path.write_text(config_text)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / f"gateway-{port}.log"

    def start(self, timeout: float = 30.0, port: int | None = None) -> Gateway:
        """Start the server and wait until /healthz answers."""
        port = port or self.port
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tokone.core.cli.main",
                "--config",
                str(self.config_path),
                "serve",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"gateway did not start:\n{self.log_path.read_text()[-4000:]}")

    def stop(self, kill: bool = False) -> None:
        """Stop the server (SIGTERM, or SIGKILL with `kill=True`)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def cli(self, *args: str) -> str:
        """Run a `tokone` CLI command against this gateway's config; return its stdout."""
        result = CliRunner().invoke(cli_app, ["--config", str(self.config_path), *args])
        if result.exit_code != 0:
            raise AssertionError(
                f"tokone {' '.join(args)} failed ({result.exit_code}):\n"
                f"{result.output}{result.stderr if result.stderr_bytes else ''}"
            )
        return result.stdout

    def funded_key(self, account: str = "demo", amount: str = "10", *extra: str) -> str:
        """Create (if needed) and top up an account, and return a new key for it."""
        try:
            self.cli("accounts", "create", account)
        except AssertionError as exc:
            if "already exists" not in str(exc):
                raise
        if amount:
            self.cli("accounts", "topup", account, amount)
        return self.cli("keys", "create", "--account", account, *extra).strip().splitlines()[-1]

    @property
    def log(self) -> str:
        """What the server printed so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""


KEY_ACCOUNTS: dict[str, str] = {}
"""Account name of each key `new_key` created."""


def new_key(gateway: Gateway, amount: str = "10", prefix: str = "acct") -> str:
    """A key of a fresh account holding `amount` units (remembered in KEY_ACCOUNTS)."""
    name = f"{prefix}{len(KEY_ACCOUNTS)}"
    key = gateway.funded_key(name, amount)
    KEY_ACCOUNTS[key] = name
    return key


def records(gateway: Gateway, key: str, count: int) -> list[dict[str, Any]]:
    """Wait until the key's account has `count` usage records and nothing held; return them,
    each with the account's `balance` and `held` at that moment."""
    url = load_config(str(gateway.config_path)).database.url
    engine = make_engine(url)
    query = text(
        "SELECT u.*, a.balance, a.held FROM usage_records u "
        "JOIN accounts a ON a.id = u.account_id WHERE a.name = :name ORDER BY u.id"
    )
    deadline = time.monotonic() + 5
    rows: list[dict[str, Any]] = []
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                found = conn.execute(query, {"name": KEY_ACCOUNTS[key]})
                rows = [dict(r._mapping) for r in found]
            if len(rows) >= count and rows[-1]["held"] == 0:
                assert len(rows) == count, rows
                return rows
            time.sleep(0.05)
    finally:
        engine.dispose()
    raise AssertionError(f"expected {count} usage records, got {rows}")


def start_gateway(directory: Path, extra: str) -> Gateway:
    """A running gateway on a free port: BASE_TOML with its SQLite database in `directory`,
    plus `extra` (providers, prices); for module-scoped fixtures (stopped by the caller)."""
    port = free_port()
    text = BASE_TOML.format(port=port, database=f"sqlite:///{directory / 'tokone.db'}")
    return Gateway(directory, text + extra, port).start()


@pytest.fixture(scope="module")
def upstream(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    """One fake upstream for a test module; its streams have the module's `N` chunks (4 by
    default). A module that needs other settings defines its own `upstream`."""
    up = FakeUpstream(host="127.0.0.1", port=0, chunks=getattr(request.module, "N", 4)).start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
) -> Iterator[Gateway]:
    """One gateway for a test module, configured with BASE_TOML plus the module's `PROVIDERS`
    (a template whose `{base}` is the fake upstream's URL)."""
    extra = request.module.PROVIDERS.format(base=upstream.base_url)
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), extra)
    yield gw
    gw.stop()


@pytest.fixture
def reset_upstream(upstream: FakeUpstream) -> None:
    """Forget the module's fake-upstream requests and settings before a test (use it with
    `pytestmark = pytest.mark.usefixtures("reset_upstream")`)."""
    upstream.reset()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Factory: `make_gateway(extra_toml, database=None)` starts a gateway (stopped at teardown).

    The config is BASE_TOML (SQLite in tmp_path, the mock provider unless `mock=False`)
    plus `extra_toml`.
    """
    started: list[Gateway] = []

    def factory(
        extra: str = "", *, database: str | None = None, mock: bool = True, start: bool = True
    ) -> Gateway:
        port = free_port()
        directory = tmp_path / f"gw{len(started)}"
        directory.mkdir()
        database = database or f"sqlite:///{tmp_path / 'tokone.db'}"
        text = BASE_TOML.format(port=port, database=database) + (MOCK_PROVIDER if mock else "")
        gateway = Gateway(directory, text + extra, port)
        started.append(gateway)
        if database.startswith("postgresql"):
            gateway.cli("db", "upgrade")
        return gateway.start() if start else gateway

    yield factory
    for gateway in started:
        gateway.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database on the local server (dropped afterwards)."""
    import psycopg

    name = "tokone_test_" + secrets.token_hex(6)
    admin = POSTGRES_ADMIN_URL
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_fake_upstream() -> Iterator[Callable[..., object]]:
    """Factory: `make_fake_upstream(**kwargs)` starts a FakeUpstream (stopped at teardown)."""
    started: list[FakeUpstream] = []

    def factory(**kwargs: object) -> FakeUpstream:
        upstream = FakeUpstream(**kwargs).start()  # type: ignore[arg-type]
        started.append(upstream)
        return upstream

    yield factory
    for upstream in started:
        upstream.stop()
