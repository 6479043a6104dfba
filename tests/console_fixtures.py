"""What the browser tests of the console share: Debian's Chromium under Playwright, screenshots,
the CLI, and the steps every journey takes (sign up, sign in, make a key, call it).

A test module imports the fixtures it uses (``from console_fixtures import browser, page,
shot``) and defines ``console_gateway`` (the gateway `page` opens) and ``SHOTS`` (the folder
screenshots are copied to, besides the test's tmp dir).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import Gateway
from sqlalchemy import text
from tokone.core.config import load_config
from tokone.core.store.db import make_engine
from typer.testing import CliRunner

playwright_sync = pytest.importorskip("playwright.sync_api")

HEADLESS_SHELL = Path("/usr/bin/chromium-headless-shell")
"""Debian's `chromium-headless-shell`: the same Blink without the browser's UI and GPU process,
a fraction of full Chromium's CPU per page (the CI installs it beside `chromium`)."""
CHROMIUM = str(HEADLESS_SHELL) if HEADLESS_SHELL.exists() else "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--headless",
]
PASSWORD = "correct horse battery"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium")
"""The `pytestmark` of every browser test module."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module."""
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, console_gateway: Gateway) -> Iterator[Any]:
    """A fresh browser context (no cookies) and page on the module's `console_gateway`,
    clipboard allowed."""
    context = browser.new_context(base_url=console_gateway.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_gateway.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


class Shots:
    """Full-page screenshots, numbered, in the test's tmp dir and copied to `shared`."""

    def __init__(self, directory: Path, prefix: str, shared: Path) -> None:
        self.directory = directory
        self.prefix = prefix
        self.shared = shared
        self.count = 0
        shared.mkdir(exist_ok=True)

    def __call__(self, page: Any, name: str) -> None:
        self.count += 1
        path = self.directory / f"{self.prefix}-{self.count:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, self.shared / path.name)


@pytest.fixture
def shot(tmp_path: Path, request: pytest.FixtureRequest) -> Shots:
    """`shot(page, name)` saves a full-page screenshot (copied to the module's `SHOTS`)."""
    return Shots(tmp_path, request.node.name.removeprefix("test_"), request.module.SHOTS)


def cli(gateway: Gateway, *args: str, input: str | None = None) -> str:
    """Run `tokone ...` (plugin commands included) against the gateway's config."""
    from tokone.core.cli.main import app

    result = CliRunner().invoke(app, ["--config", str(gateway.config_path), *args], input=input)
    assert result.exit_code == 0, result.output
    return result.stdout


def sign_up(page: Any, email: str, shot: Shots | None = None, name: str = "") -> None:
    """Fill the sign-up form; the console signs the new user in and shows the keys page."""
    page.goto("/signup")
    page.fill("input[name=email]", email)
    page.fill("input[name=display_name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    if shot:
        shot(page, "signup")
    page.click("button[type=submit]:has-text('Create my account')")
    page.wait_for_url("**/keys")


def sign_in(page: Any, email: str, password: str = PASSWORD, url: str = "/login") -> None:
    """Fill the sign-in form and submit it."""
    page.goto(url)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")


def create_key(page: Any, name: str) -> str:
    """Create a key on the keys page; return it as the page shows it (once)."""
    page.goto("/keys")
    page.fill("input[name=name]", name)
    page.click("button:has-text('Create key')")
    page.wait_for_selector("#new-key")
    value: str = page.input_value("#new-key")
    return value


def chat(gateway: Gateway, key: str, **extra: Any) -> Any:
    """One chat completion with the openai SDK against the mock model."""
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(
        model="mock-1",
        messages=[{"role": "user", "content": "Hello from the console test"}],
        **extra,
    )


def eventually(check: Any, timeout: float = 8.0) -> Any:
    """Call `check` until it returns a true value (or raise its last AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            raise AssertionError(f"{check} returned {result!r}")
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def sql(gateway: Gateway, query: str, **params: Any) -> list[dict[str, Any]]:
    """Rows of a query against the gateway's database."""
    engine = make_engine(load_config(str(gateway.config_path)).database.url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(query), params)]
    finally:
        engine.dispose()
