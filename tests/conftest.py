"""Shared fixtures: real gateway processes on free ports, the fake upstream, fresh databases.

Tests drive TokOne the way users do: `tokone serve` as a server process of its own (forked
from a pre-imported interpreter: :mod:`gateway_process`), the official SDKs (or httpx) as
clients, the CLI for accounts and keys.

What a test module needs from here: the `gateway` fixture (one per module, from the module's
`PROVIDERS`; tests use accounts of their own, :func:`new_key`) or `make_gateway` (one per
test, for a config of its own); :class:`Gateway`'s SDK clients, CLI and `account()`; config
pieces (BASE_TOML, MOCK_PROVIDER, FAST_REFRESH, :func:`provider`, :func:`price`); polling
instead of sleeping (:func:`wait_until`, :func:`wait_for_usage`, :func:`records`); plugins
on the path (:func:`importable`, `plugin_modules`). The ledger's own checks live in
`ledger_checks.py`, the fake provider server in `fake_upstream/`.
"""

from __future__ import annotations

import atexit
import compileall
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import httpx
import openai
import pytest
import typer.main
import typer.testing
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

import gateway_process
from fake_upstream import FakeUpstream
from google import genai
from google.genai import types as genai_types
from sqlalchemy import text
from tokone.core.cli.main import app as cli_app
from tokone.core.config import load_config
from tokone.core.store.db import make_engine, upgrade

typer.testing._get_command = functools.cache(typer.main.get_command)  # type: ignore[attr-defined]
"""Typer's test runner builds the whole click command tree again on every `invoke` (about
0.13 s of signature parsing for TokOne's CLI, and the tests invoke it thousands of times); the
tree is the same each time (plugin commands are looked up when invoked), so build it once."""

POSTGRES_ADMIN_URL = os.environ.get(
    "TOKONE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TOKONE_TEST_REDIS", "redis://127.0.0.1:6379/0")
T = TypeVar("T")

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

ADMIN = {"authorization": "Bearer admin-test-key"}
"""Headers of an admin API call (BASE_TOML's admin key)."""
HELLO = [{"role": "user", "content": "hello there"}]
"""A two-word chat prompt."""


def provider(
    name: str,
    base_url: str,
    *,
    models: tuple[str, ...] = ("gpt-4o-mini",),
    adapter: str = "openai",
    priority: int = 0,
    weight: int = 1,
    api_key: str = "",
    extra: str = "",
) -> str:
    """One `[[providers]]` table (`extra`: more lines of it, e.g. `timeouts = {...}`)."""
    listed = ", ".join(f'"{m}"' for m in models)
    key = f'api_key = "{api_key}"\n' if api_key else ""
    return (
        f'\n[[providers]]\nname = "{name}"\nadapter = "{adapter}"\nbase_url = "{base_url}"\n'
        f"{key}models = [{listed}]\npriority = {priority}\nweight = {weight}\n{extra}\n"
    )


def price(model: str, input: float, output: float | None = None, **more: float) -> str:
    """One `[prices."MODEL"]` table: per million tokens (`more`: `cached_input`, ...)."""
    fields = {"input": input, "output": output, **more}
    lines = "".join(f"{k} = {v}\n" for k, v in fields.items() if v is not None)
    return f'\n[prices."{model}"]\n{lines}'


FAST_REFRESH = """
[plugins.key_auth]
refresh_seconds = 0.05

[plugins.token_pricing]
refresh_seconds = 0.05

[plugins.health]
refresh_seconds = 0.05
"""
"""Config that makes a gateway see key, group and channel-switch changes within 50 ms, so a
test polls for them (:func:`wait_until`) instead of sleeping past the default second."""


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `predicate` every 20 ms until it returns something true, and return that; fail
    (naming `what`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.02)
    return value


def wait_for_usage(gateway: Gateway, requests: int, account: str = "demo") -> dict[str, Any]:
    """`accounts show --json` of `account` once it has `requests` usage records (at least)
    and holds nothing, i.e. every call so far is settled."""
    seen: list[dict[str, Any]] = []

    def settled() -> dict[str, Any] | None:
        seen[:] = [gateway.account(account)]
        data = seen[0]
        return data if data["usage"]["requests"] >= requests and data["held_micro"] == 0 else None

    try:
        return wait_until(settled)
    except AssertionError:
        raise AssertionError(f"usage not recorded: {seen}") from None


def key_status(gateway: Gateway, key: str) -> int:
    """The status `GET /v1/models` answers `key` with: 200, 401 (unknown, e.g. rotated away)
    or 403 (disabled, revoked) — a side-effect-free way to see what the gateway knows."""
    headers = {"authorization": f"Bearer {key}"}
    return httpx.get(gateway.url + "/v1/models", headers=headers).status_code


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_sessionstart(session: pytest.Session) -> None:
    """Byte-compile TokOne's own packages once. With PYTHONDONTWRITEBYTECODE set (as on this
    project's CI machine) every gateway and CLI process the tests start would otherwise
    compile them from source again: about a quarter of a second of CPU each. Then start the
    fork server the gateways come from (:mod:`gateway_process`)."""
    root = Path(__file__).resolve().parent.parent
    for package in ("core", "plugins", "providers"):
        compileall.compile_dir(root / package, quiet=1)
    gateway_process.warm_up()


_TEMPLATE_LOCK = threading.Lock()
_TEMPLATE: list[Path] = []


def migrated_sqlite_template() -> Path:
    """An SQLite database at the newest revision, made once per test process (alembic's
    import and run take about a second, and most tests start a gateway on a new database;
    the first run's own migration is tested in test_cli and test_migrations)."""
    with _TEMPLATE_LOCK:
        if not _TEMPLATE:
            folder = tempfile.mkdtemp(prefix="tokone-template-")
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            path = Path(folder) / "template.db"
            upgrade(f"sqlite:///{path}")
            _TEMPLATE.append(path)
        return _TEMPLATE[0]


def migrated_sqlite(path: Path) -> str:
    """A new SQLite database at `path` with the migrated schema (a copy of the template);
    its URL."""
    shutil.copyfile(migrated_sqlite_template(), path)
    return f"sqlite:///{path}"


def seed_database(config_path: Path) -> None:
    """Give the config's SQLite database the migrated schema when the file does not exist yet
    (the way `tokone serve` would create it, without running the migrations again)."""
    url = load_config(str(config_path)).database.url
    if not url.startswith("sqlite:///"):
        return
    path = Path(url.removeprefix("sqlite:///"))
    if path.parent.is_dir() and not path.exists():
        migrated_sqlite(path)


class Gateway:
    """A `tokone serve` subprocess with its own config file and database (a new SQLite file
    starts from the migrated template: :func:`seed_database`)."""

    def __init__(self, directory: Path, config_text: str, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = directory / "tokone.toml"
        self.config_path.write_text(config_text)
        seed_database(self.config_path)
        self.process: gateway_process.ForkedProcess | None = None
        self.log_path = directory / f"gateway-{port}.log"
        self.serving_port = port

    def start(self, timeout: float = 30.0, port: int | None = None) -> Gateway:
        """Start the server (on `port`, else its own) and wait until /healthz answers."""
        return self.spawn(port).wait_ready(timeout)

    def spawn(self, port: int | None = None) -> Gateway:
        """Start the server process (on `port`, else its own) without waiting for it."""
        self.serving_port = port = port or self.port
        argv = ["--config", str(self.config_path), "serve", "--port", str(port)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = gateway_process.start(argv, self.directory, env, self.log_path)
        return self

    def wait_ready(self, timeout: float = 30.0) -> Gateway:
        """Wait until the spawned server answers /healthz (fail if it exits or is too slow)."""
        assert self.process is not None, "spawn() first"
        url = f"http://127.0.0.1:{self.serving_port}/healthz"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
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

    def openai_client(self, key: str) -> openai.OpenAI:
        """The official OpenAI SDK on this gateway, as `key`, without retries."""
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    def anthropic_client(self, key: str) -> anthropic.Anthropic:
        """The official Anthropic SDK on this gateway, as `key`, without retries."""
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0)

    def gemini_client(self, key: str, api_version: str | None = None) -> genai.Client:
        """google-genai on this gateway, as `key`, one attempt per call."""
        options = genai_types.HttpOptions(
            base_url=self.url,
            api_version=api_version,
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        return genai.Client(api_key=key, http_options=options)

    def account(self, name: str = "demo") -> dict[str, Any]:
        """`tokone accounts show NAME --json`, parsed."""
        return json.loads(self.cli("accounts", "show", name, "--json"))

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


def start_together(*gateways: Gateway) -> list[Gateway]:
    """Start several gateways at once (their processes boot side by side); return them ready."""
    for gateway in gateways:
        gateway.spawn()
    return [gateway.wait_ready() for gateway in gateways]


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
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """One gateway for a test module, configured with BASE_TOML plus the module's `PROVIDERS`
    (a `str.format` template whose `{base}` is the URL of the module's `upstream`, which is
    started only for a template that names it). Tests of one module share it: each uses
    accounts of its own (:func:`new_key`)."""
    template: str = request.module.PROVIDERS
    base = request.getfixturevalue("upstream").base_url if "{base}" in template else ""
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), template.format(base=base))
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
    plus `extra_toml`; a PostgreSQL `database` is migrated (once) before the first start.
    """
    started: list[Gateway] = []
    migrated: set[str] = set()

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
        if database.startswith("postgresql") and database not in migrated:
            gateway.cli("db", "upgrade")
            migrated.add(database)
        return gateway.start() if start else gateway

    yield factory
    for gateway in started:
        gateway.stop()


TEST_PLUGINS = Path(__file__).parent / "plugins"
"""Third-party plugins the tests load by module path (`min_charge`: own settings and command)."""


def importable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make the modules in `folder` importable here and in every gateway or CLI process the
    test starts afterwards (PYTHONPATH); undone after the test."""
    monkeypatch.setenv("PYTHONPATH", f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(folder))


@pytest.fixture
def plugin_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Factory: `plugin_modules(name=source, ...)` writes those modules into a folder of the
    test's own and makes it :func:`importable`; returns the folder."""
    folder = tmp_path / "mods"

    def write(**modules: str) -> Path:
        folder.mkdir(exist_ok=True)
        for name, source in modules.items():
            (folder / f"{name}.py").write_text(source)
        importable(monkeypatch, folder)
        return folder

    return write


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
